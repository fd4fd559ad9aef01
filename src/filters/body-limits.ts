// Request bodies and uploads. The size limit is the core's (`max_body_size` on the route or in `limits`):
// Content-Length above it is refused before forwarding, a streamed (chunked) body as soon as it passes it.
// This module adds, per route (`body: NAME | {inline}`):
//  - the allowed request media types (415 `unsupported_media_type`);
//  - for multipart/form-data, each part's declared type against an allow-list (415 `part_type_not_allowed`)
//    and its leading bytes against that type's signature; executable signatures (MZ, ELF, Mach-O, #!) are
//    refused under any non-executable type (415 `part_content_mismatch`); part count and part size limits.
// Parts are checked while the body streams: the bytes of a part are held back until its headers and
// first bytes passed, so the upstream never receives a refused part (it sees an aborted request).
import { array, boolean, integer, object, oneOf, optional, size, string, withDefault, type Infer, type Path } from '../config/schema.ts';
import { BodyRejectedError, reportDeny, type BodyFilter, type RequestContext } from '../contract/context.ts';
import { namedPolicies, policyRef, resolveRef } from './policy-ref.ts';
import { defineFilter, deny, type CompileEnv, type Deny } from '../contract/filter.ts';

const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$/i;
const SNIFF_BYTES = 16;
const MAX_PART_HEADER = 16 * 1024;

const multipartSchema = object({
  part_types: array(string({ pattern: MEDIA_TYPE, patternName: 'media type (type/subtype or type/*)' }), {
    single: true,
    minItems: 1,
    description: 'Declared types allowed for file parts (a part without Content-Type counts as application/octet-stream). Plain text fields always pass.',
  }),
  sniff: withDefault(boolean({ description: 'Check each file part\'s leading bytes against its declared type (PNG, JPEG, GIF, WebP, BMP, TIFF, PDF, ZIP, gzip, 7z, RAR) and refuse executables.' }), true),
  max_parts: withDefault(integer({ min: 1, description: 'Most parts one body may have.' }), 100),
  max_part_size: optional(size({ description: 'Largest part (bytes of content).' })),
});

const bodyPolicySchema = object(
  {
    content_types: optional(array(string({ pattern: MEDIA_TYPE, patternName: 'media type (type/subtype or type/*)' }), {
      single: true,
      minItems: 1,
      description: 'Media types a request body may have; a body without Content-Type is refused too. Any when absent.',
    })),
    multipart: optional(multipartSchema),
    mode: withDefault(oneOf(['enforce', 'report'] as const, { description: 'report: a body these rules would refuse (its type, a multipart part) is forwarded whole, and the refusal counted and logged as a reported deny. The size limit (max_body_size) is always enforced.' }), 'enforce'),
  },
  { description: 'Request body rules of a route; the size limit is the route\'s max_body_size.' },
);

export type BodyPolicyConfig = Infer<typeof bodyPolicySchema>;

/** Allowed media types: exact names and `type/*` prefixes. */
class TypeSet {
  readonly exact: Set<string>;
  readonly prefixes: string[];
  constructor(list: readonly string[]) {
    this.exact = new Set();
    this.prefixes = [];
    for (const t of list) {
      const lower = t.toLowerCase();
      if (lower.endsWith('/*')) this.prefixes.push(lower.slice(0, -1));
      else this.exact.add(lower);
    }
  }
  has(type: string): boolean {
    if (this.exact.has(type)) return true;
    for (const p of this.prefixes) if (type.startsWith(p)) return true;
    return false;
  }
}

const bytes = (...b: number[]) => Buffer.from(b);
const ascii = (s: string) => Buffer.from(s, 'latin1');
const startsWith = (b: Buffer, sig: Buffer, at = 0) => b.length >= at + sig.length && b.subarray(at, at + sig.length).equals(sig);

const ZIP = [ascii('PK\x03\x04'), ascii('PK\x05\x06'), ascii('PK\x07\x08')];
/** Leading-byte signatures of the types worth checking. */
export const SIGNATURES: Readonly<Record<string, (b: Buffer) => boolean>> = {
  'image/png': (b) => startsWith(b, bytes(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)),
  'image/jpeg': (b) => startsWith(b, bytes(0xff, 0xd8, 0xff)),
  'image/gif': (b) => startsWith(b, ascii('GIF87a')) || startsWith(b, ascii('GIF89a')),
  'image/webp': (b) => startsWith(b, ascii('RIFF')) && startsWith(b, ascii('WEBP'), 8),
  'image/bmp': (b) => startsWith(b, ascii('BM')),
  'image/tiff': (b) => startsWith(b, bytes(0x49, 0x49, 0x2a, 0x00)) || startsWith(b, bytes(0x4d, 0x4d, 0x00, 0x2a)),
  'application/pdf': (b) => startsWith(b, ascii('%PDF-')),
  'application/zip': (b) => ZIP.some((z) => startsWith(b, z)),
  'application/x-zip-compressed': (b) => ZIP.some((z) => startsWith(b, z)),
  'application/gzip': (b) => startsWith(b, bytes(0x1f, 0x8b)),
  'application/x-gzip': (b) => startsWith(b, bytes(0x1f, 0x8b)),
  'application/x-7z-compressed': (b) => startsWith(b, bytes(0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c)),
  'application/vnd.rar': (b) => startsWith(b, ascii('Rar!\x1a\x07')),
  'application/x-rar-compressed': (b) => startsWith(b, ascii('Rar!\x1a\x07')),
};

const EXECUTABLE_SIGNATURES = [
  ascii('MZ'), // Windows PE
  bytes(0x7f, 0x45, 0x4c, 0x46), // ELF
  bytes(0xfe, 0xed, 0xfa, 0xce), bytes(0xfe, 0xed, 0xfa, 0xcf), bytes(0xce, 0xfa, 0xed, 0xfe), bytes(0xcf, 0xfa, 0xed, 0xfe), // Mach-O
  bytes(0xca, 0xfe, 0xba, 0xbe), // Mach-O universal (and Java classes)
  ascii('#!'), // scripts
  bytes(0x00, 0x61, 0x73, 0x6d), // WebAssembly
];
const EXECUTABLE_TYPES = new Set([
  'application/x-msdownload', 'application/vnd.microsoft.portable-executable', 'application/x-executable', 'application/x-elf',
  'application/x-mach-binary', 'application/x-sh', 'application/x-shellscript', 'application/wasm', 'text/x-shellscript',
]);

export function looksExecutable(lead: Buffer): boolean {
  return EXECUTABLE_SIGNATURES.some((sig) => startsWith(lead, sig));
}

interface PartInfo {
  /** null: a plain field (no filename, no declared type other than text/plain): not checked. */
  type: string | null;
  filename: string | null;
}

/** Parses a part's header block; null when malformed or ambiguous (repeated headers, folding). */
export function parsePartHeaders(text: string): PartInfo | null {
  let disposition: string | undefined;
  let type: string | undefined;
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    if (line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) return null;
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-disposition') {
      if (disposition !== undefined) return null;
      disposition = value;
    } else if (name === 'content-type') {
      if (type !== undefined) return null;
      type = value.split(';')[0]!.trim().toLowerCase();
    }
  }
  if (disposition === undefined || !/^form-data\s*(;|$)/i.test(disposition)) return null;
  const fm = /;\s*filename\*?\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/i.exec(disposition);
  const filename = fm ? (fm[1] ?? fm[2] ?? '').trim() : null;
  if (filename === null && (type === undefined || type === 'text/plain')) return { type: null, filename: null };
  return { type: type ?? 'application/octet-stream', filename };
}

/** The boundary parameter of a multipart Content-Type, or null. */
export function boundaryOf(contentType: string): string | null {
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;"]{1,70}))\s*(?:;|$)/i.exec(contentType);
  const b = m ? (m[1] ?? m[2])! : null;
  return b !== null && /^[0-9A-Za-z'()+_,\-./:=? ]+$/.test(b) && !b.endsWith(' ') ? b : null;
}

export interface CompiledBody {
  readonly contentTypes: TypeSet | null;
  readonly partTypes: TypeSet | null;
  readonly sniff: boolean;
  readonly maxParts: number;
  readonly maxPartSize: number;
  readonly config: BodyPolicyConfig;
}

export function compileBodyPolicy(config: BodyPolicyConfig, path: Path, env: CompileEnv): CompiledBody {
  const contentTypes = config.content_types ? new TypeSet(config.content_types) : null;
  if (config.multipart && contentTypes && !contentTypes.has('multipart/form-data')) {
    env.problem([...path, 'multipart'], 'multipart rules are set but content_types does not allow multipart/form-data');
  }
  return {
    contentTypes,
    partTypes: config.multipart ? new TypeSet(config.multipart.part_types) : null,
    sniff: config.multipart?.sniff ?? true,
    maxParts: config.multipart?.max_parts ?? 100,
    maxPartSize: config.multipart?.max_part_size ?? Infinity,
    config,
  };
}

const State = { Preamble: 0, AfterDelimiter: 1, Headers: 2, Sniff: 3, Content: 4, Epilogue: 5 } as const;
type State = (typeof State)[keyof typeof State];
const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');

/** The streaming multipart inspector: yields bytes only once the part they belong to has passed. */
function multipartInspector(rules: CompiledBody): BodyFilter {
  const partTypes = rules.partTypes!;
  const decide = (part: PartInfo, lead: Buffer, ended: boolean): string | null => {
    if (part.type === null) return null;
    if (part.filename === '' && ended && lead.length === 0) return null; // an empty file input
    if (!partTypes.has(part.type)) return 'part_type_not_allowed';
    if (rules.sniff) {
      const sig = SIGNATURES[part.type];
      if (sig !== undefined ? !sig(lead) : looksExecutable(lead) && !EXECUTABLE_TYPES.has(part.type)) return 'part_content_mismatch';
    }
    return null;
  };
  return async function* inspect(ctx: RequestContext, body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const fail = (status: number, reason: string) => {
      ctx.deny = { filter: 'body_limits', reason };
      return new BodyRejectedError(status, reason);
    };
    const boundary = boundaryOf(String(ctx.requestHeaders['content-type']))!;
    const dashBoundary = Buffer.from(`--${boundary}`, 'latin1');
    const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    /**
     * Index (in `buf`, from `from`) of the next delimiter's CRLF, 0 for `--boundary` at the very start of the
     * body, -1 when none is complete yet, -2 when `--boundary` appears without the CRLF before it: lenient
     * parsers (bare LF) would split parts there that this inspector did not see, so it is refused.
     */
    const findBoundary = (buf: Buffer, from: number, atBodyStart: boolean): number => {
      if (atBodyStart && startsWith(buf, dashBoundary)) return 0;
      if (atBodyStart && buf.length < dashBoundary.length && dashBoundary.subarray(0, buf.length).equals(buf)) return -1;
      const k = buf.indexOf(dashBoundary, from);
      if (k === -1) return -1;
      // The CRLF must lie in the scanned region too (not be borrowed from a header block's end).
      if (k - 2 >= from && buf[k - 2] === 0x0d && buf[k - 1] === 0x0a) return k - 2;
      return -2;
    };
    let pending: Buffer = Buffer.alloc(0); // bytes not yet released
    let base = 0; // absolute offset of pending[0]
    let pos = 0; // absolute parse position
    let state = State.Preamble as State;
    let partStart = 0; // where the current, not yet passed, part's delimiter starts
    let parts = 0;
    let partBytes = 0;
    let part: PartInfo = { type: null, filename: null };
    for await (const chunk of body) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      parse: for (;;) {
        const rel = pos - base;
        switch (state) {
          case State.Preamble: {
            // The first delimiter: `--boundary` at the very start, or after a CRLF.
            const j = findBoundary(pending, rel, pos === 0);
            if (j === -2) throw fail(400, 'multipart_invalid');
            if (j === -1) {
              pos = Math.max(pos, base + pending.length - delimiter.length + 1);
              break parse;
            }
            partStart = base + j;
            pos = base + j + (j === 0 && base === 0 && startsWith(pending, dashBoundary) ? dashBoundary.length : delimiter.length);
            state = State.AfterDelimiter;
            continue;
          }
          case State.AfterDelimiter: {
            if (pending.length - rel < 2) break parse;
            if (pending[rel] === 0x2d && pending[rel + 1] === 0x2d) {
              state = State.Epilogue; // close delimiter: the rest is epilogue
              pos += 2;
              continue;
            }
            const eol = pending.indexOf(CRLF, rel);
            if (eol === -1) {
              if (pending.length - rel > 256) throw fail(400, 'multipart_invalid');
              break parse;
            }
            for (let k = rel; k < eol; k++) if (pending[k] !== 0x20 && pending[k] !== 0x09) throw fail(400, 'multipart_invalid');
            pos = base + eol + 2;
            if (++parts > rules.maxParts) throw fail(413, 'too_many_parts');
            state = State.Headers;
            continue;
          }
          case State.Headers: {
            let contentStart: number;
            let parsed: PartInfo | null;
            if (startsWith(pending, CRLF, rel)) {
              parsed = parsePartHeaders('');
              contentStart = rel + 2;
            } else {
              const end = pending.indexOf(CRLFCRLF, rel);
              if (end === -1) {
                if (pending.length - rel > MAX_PART_HEADER) throw fail(400, 'multipart_invalid');
                break parse;
              }
              parsed = parsePartHeaders(pending.subarray(rel, end).toString('latin1'));
              contentStart = end + 4;
            }
            if (parsed === null) throw fail(400, 'multipart_invalid');
            part = parsed;
            pos = base + contentStart;
            partBytes = 0;
            state = State.Sniff;
            continue;
          }
          case State.Sniff: {
            const d = pending.indexOf(delimiter, rel);
            let lead: Buffer;
            let ended = false;
            if (d !== -1 && d - rel < SNIFF_BYTES) {
              lead = pending.subarray(rel, d);
              ended = true;
            } else if (d !== -1 || pending.length - rel >= SNIFF_BYTES + delimiter.length) {
              lead = pending.subarray(rel, rel + SNIFF_BYTES);
            } else break parse;
            const refused = decide(part, lead, ended);
            if (refused !== null) throw fail(415, refused);
            state = State.Content;
            continue;
          }
          case State.Content: {
            const j = findBoundary(pending, rel, false);
            if (j === -2) throw fail(400, 'multipart_invalid');
            const end = j === -1 ? Math.max(pos, base + pending.length - delimiter.length + 1) : base + j;
            partBytes += end - pos;
            if (partBytes > rules.maxPartSize) throw fail(413, 'part_too_large');
            if (j === -1) {
              pos = end;
              break parse;
            }
            partStart = end;
            pos = end + delimiter.length;
            state = State.AfterDelimiter;
            continue;
          }
          case State.Epilogue: {
            // Nothing but line breaks after the close delimiter: parsers that read on would see more parts.
            for (let k = rel; k < pending.length; k++) {
              const c = pending[k];
              if (c !== 0x0d && c !== 0x0a && c !== 0x20 && c !== 0x09) throw fail(400, 'multipart_invalid');
            }
            pos = base + pending.length;
            break parse;
          }
        }
      }
      const held = state === State.AfterDelimiter || state === State.Headers || state === State.Sniff;
      const safe = held ? partStart : pos;
      if (safe > base) {
        const out = pending.subarray(0, safe - base);
        pending = pending.subarray(safe - base);
        base = safe;
        yield out;
      }
    }
    if (state !== State.Epilogue) throw fail(400, 'multipart_invalid');
    if (pending.length > 0) yield pending;
  };
}

/**
 * Report mode of the multipart inspector: every chunk goes on as it arrives, and the inspector reads the
 * same chunks beside it (its output is dropped). Its refusal is recorded as a reported deny and it stops.
 */
function reportingInspector(inspect: BodyFilter): BodyFilter {
  return async function* report(ctx: RequestContext, body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const queue: Buffer[] = [];
    let ended = false;
    let stopped = false;
    let complete = false;
    let wake: (() => void) | null = null;
    const copy: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const chunk = queue.shift();
          if (chunk !== undefined) yield chunk;
          else if (ended) return;
          else await new Promise<void>((r) => (wake = r));
        }
      },
    };
    const inspected = (async () => {
      for await (const _ of inspect(ctx, copy)) void _;
    })().catch((err: unknown) => {
      stopped = true;
      queue.length = 0;
      if (!(err instanceof BodyRejectedError)) throw err;
      if (!complete && ended) return; // the upload was abandoned: not the body's fault
      if (ctx.deny !== null && ctx.deny.filter === 'body_limits') ctx.deny = null;
      reportDeny(ctx, 'body_limits', err.reason);
    });
    const push = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    try {
      for await (const chunk of body) {
        if (!stopped) {
          queue.push(chunk);
          push();
        }
        yield chunk;
      }
      complete = true;
    } finally {
      ended = true;
      push();
    }
    // The verdict on the whole body (a missing close delimiter) is recorded before the body ends.
    await inspected;
  };
}

function hasBody(ctx: RequestContext): boolean {
  const h = ctx.requestHeaders;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  if (cl !== undefined) return cl !== '0';
  // HTTP/2 bodies need not announce their length; a declared type is the sign of one.
  return ctx.httpVersion.charCodeAt(0) === 0x32 /* '2' */ && h['content-type'] !== undefined;
}

export const bodyLimits = defineFilter<Record<string, BodyPolicyConfig>, string | BodyPolicyConfig, Map<string, CompiledBody>>({
  name: 'body_limits',
  reasons: ['unsupported_media_type', 'multipart_invalid', 'part_type_not_allowed', 'part_content_mismatch', 'too_many_parts', 'part_too_large'],
  stage: 'route',
  globalKey: 'body',
  globalSchema: namedPolicies(bodyPolicySchema, 'Named request-body policies, referenced by routes as `body: NAME`.'),
  routeKey: 'body',
  routeSchema: policyRef(bodyPolicySchema, 'Request-body policy of the route: a name, an inline policy, or none.'),
  setup(config, env) {
    const out = new Map<string, CompiledBody>();
    for (const [name, policy] of Object.entries(config ?? {})) out.set(name, compileBodyPolicy(policy, ['body', name], env));
    return out;
  },
  compile({ config, shared, routePath }, env) {
    const rules = resolveRef(config, shared, (c, p) => compileBodyPolicy(c, p, env), [...routePath, 'body'], env, 'body');
    if (rules === null) return null;
    const { contentTypes, partTypes } = rules;
    const reportMode = rules.config.mode === 'report';
    const inspector = partTypes === null ? null : reportMode ? reportingInspector(multipartInspector(rules)) : multipartInspector(rules);
    const UNSUPPORTED = deny(415, 'unsupported_media_type', 'this route does not accept a body of this type');
    const MISSING_TYPE = deny(415, 'unsupported_media_type', 'a request body needs a Content-Type');
    const INVALID = deny(400, 'multipart_invalid', 'multipart/form-data needs a valid boundary');
    const check = (ctx: RequestContext): Deny | undefined => {
      if (!hasBody(ctx)) return undefined;
      const ct = ctx.requestHeaders['content-type'];
      if (ct === undefined) return contentTypes !== null ? MISSING_TYPE : undefined;
      const semi = ct.indexOf(';');
      const media = (semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase();
      if (contentTypes !== null && !contentTypes.has(media)) return UNSUPPORTED;
      if (inspector !== null && media === 'multipart/form-data') {
        if (boundaryOf(ct) === null) return INVALID;
        ctx.bodyFilter = inspector;
      }
      return undefined;
    };
    const report = (ctx: RequestContext): undefined => {
      const refused = check(ctx);
      if (refused !== undefined) reportDeny(ctx, 'body_limits', refused.reason);
      return undefined;
    };
    return {
      name: 'body_limits',
      onRequest: reportMode ? report : check,
      onResponse: null,
      describe: () => ({
        content_types: rules.config.content_types ?? 'any',
        multipart: rules.config.multipart ?? null,
        size: "the route's max_body_size",
        mode: rules.config.mode,
      }),
    };
  },
});
