// API-key provider: machine clients present a key in a header (default X-API-Key) or, only when enabled,
// a query parameter. Keys are stored as SHA-256 hashes (in a key file, re-read when it changes, or inline
// in the policy); the presented key is hashed and its hash looked up in a Map, so the lookup never
// compares the key itself. Each entry names a subject, roles, scopes and optionally its own rate limit;
// several entries may share a subject (rotation). A key removed from the file stops working at the next
// poll, without restart; a broken file keeps the last good set (logged with the reason).
import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  array, boolean, duration, integer, object, optional, string, withDefault, type Infer, type Issue, type Path,
} from '../config/schema.ts';
import { forbiddenDenies, grantsReader, type AuthProvider } from '../auth/provider.ts';
import type { Credential, RequestContext } from '../contract/context.ts';
import { makeRate } from '../contract/rate-limit.ts';
import type { CompileEnv, Deny, Verdict } from '../contract/filter.ts';

export const API_KEY_REASONS = ['api_key_missing', 'api_key_invalid', 'api_key_ambiguous', 'api_keys_unavailable'] as const;
export type ApiKeyReason = (typeof API_KEY_REASONS)[number];

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const KEY_ID = /^[A-Za-z0-9_.:@-]{1,64}$/;
/** Longest key hashed: anything longer is refused before any work (bounded cost per request). */
const MAX_KEY_LENGTH = 256;
/** The prefix of generated keys: recognisable by secret scanners and in support tickets. */
export const API_KEY_PREFIX = 'pcak_';
const AMBIGUOUS = Symbol('ambiguous');

export const apiKeyEntrySchema = object(
  {
    id: optional(string({ pattern: KEY_ID, patternName: 'key id (letters, digits, _ . : @ -)', description: 'Name of this key (logs, audit, rate-limit keys); default: the first 12 hex digits of its hash. Unique per provider.' })),
    sha256: string({ pattern: /^[0-9a-fA-F]{64}$/, patternName: 'SHA-256 hex digest', description: 'SHA-256 (hex) of the key; `portcullis secrets generate --api-key SUBJECT` prints it. The key itself is never stored.' }),
    subject: string({ minLength: 1, description: 'Subject the key authenticates (logs, audit, rate-limit keys); several keys may share one (rotation).' }),
    roles: withDefault(array(string(), { single: true, description: 'Roles of the key (for authorize).' }), []),
    scopes: withDefault(array(string(), { single: true, description: 'Scopes of the key (for authorize).' }), []),
    rate_limit: optional(object({
      limit: integer({ min: 1, description: 'Requests allowed per window.' }),
      window: duration({ min: 1, description: 'The window of `limit`.' }),
      burst: optional(integer({ min: 1, description: 'Requests that may arrive at once; default: limit.' })),
    }, { description: 'This key\'s own rate, applied by rate limits keyed on `credential` instead of their own.' })),
  },
  { description: 'One API key, stored by its hash.' },
);
type EntryConfig = Infer<typeof apiKeyEntrySchema>;

const entriesSchema = array(apiKeyEntrySchema, { description: 'API keys.' });

export const apiKeyProviderSchema = object(
  {
    keys_file: optional(string({ description: 'Key file (YAML: `keys: [{ id, sha256, subject, roles, scopes, rate_limit }]`), e.g. a mounted Secret; re-read when it changes, the last good set kept when it breaks.' })),
    keys: optional(array(apiKeyEntrySchema, { description: 'Inline keys (hashes), besides or instead of keys_file.' })),
    header: withDefault(string({ pattern: HEADER_NAME, patternName: 'header name', description: 'Header carrying the key.' }), 'X-API-Key'),
    query: optional(string({ pattern: /^[A-Za-z0-9._-]+$/, patternName: 'parameter name', description: 'Also accept the key in this query parameter (keys in URLs end up in the logs of every hop: only when a client cannot send headers). Removed from the query sent upstream.' })),
    forward_key: withDefault(boolean({ description: 'Send the key header on to the upstream (default: removed, the upstream gets the verified identity instead).' }), false),
    reload_interval: withDefault(duration({ min: 100, description: 'How often keys_file is checked for changes.' }), 1_000),
    subject_header: optional(string({ pattern: HEADER_NAME, patternName: 'header name', description: 'Upstream header carrying the verified subject; client-sent copies are removed.' })),
  },
  {
    description: 'An API-key provider: keys from a header (or a query parameter), stored hashed.',
    check(v, path, issues) {
      if (v.keys_file === undefined && !v.keys?.length) issues.push({ path, message: 'give "keys_file" or "keys"' });
    },
  },
);
export type ApiKeyProviderConfig = Infer<typeof apiKeyProviderSchema>;

interface Entry {
  readonly id: string;
  readonly subject: string;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly credential: Credential;
}

/** SHA-256 (hex) of a presented or generated key. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A parsed key set: hash to entry, or the problems that make it unusable. */
function buildSet(provider: string, entries: readonly EntryConfig[], where: string, issues: string[]): Map<string, Entry> {
  const byHash = new Map<string, Entry>();
  const ids = new Set<string>();
  for (const e of entries) {
    const hash = e.sha256.toLowerCase();
    const id = e.id ?? hash.slice(0, 12);
    if (byHash.has(hash)) issues.push(`${where}: key "${id}": the same key hash appears twice`);
    if (ids.has(id)) issues.push(`${where}: duplicate key id "${id}"`);
    ids.add(id);
    const rate = e.rate_limit ? makeRate(e.rate_limit.limit, e.rate_limit.window, e.rate_limit.burst) : null;
    byHash.set(hash, Object.freeze({
      id,
      subject: e.subject,
      claims: Object.freeze({ sub: e.subject, key_id: id, roles: Object.freeze([...e.roles]), scopes: Object.freeze([...e.scopes]) }),
      credential: Object.freeze({ id: `api_key:${provider}:${id}`, rate }),
    }));
  }
  return byHash;
}

function issueText(file: string, issues: readonly Issue[]): string {
  return issues.map((i) => `${file}: ${i.path.length ? i.path.join('.') + ': ' : ''}${i.message}`).join('; ');
}

/** Reads and checks a key file: its entries, or why it cannot be used. */
export function readKeyFile(file: string): EntryConfig[] | string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    return `${file}: invalid YAML (${(err as Error).message.split('\n')[0]})`;
  }
  const list = doc !== null && typeof doc === 'object' && !Array.isArray(doc) && 'keys' in doc ? (doc as { keys: unknown }).keys : doc ?? [];
  const issues: Issue[] = [];
  const parsed = entriesSchema.parse(list, ['keys'], issues);
  if (parsed === undefined || issues.length) return issueText(file, issues.length ? issues : [{ path: [], message: 'invalid key list' }]);
  return parsed;
}

export function createApiKeyProvider(name: string, cfg: ApiKeyProviderConfig, path: Path, env: CompileEnv): AuthProvider {
  const log = env.telemetry.log;
  const header = cfg.header.toLowerCase();
  const query = cfg.query ?? null;
  if (query !== null && env.mode === 'production') log.warn({ provider: name }, 'API keys accepted in the query string end up in access logs of every hop');

  const inlineProblems: string[] = [];
  const inline = buildSet(name, cfg.keys ?? [], 'keys', inlineProblems);
  for (const p of inlineProblems) env.problem([...path, 'keys'], p);

  /** The keys in force: inline plus the last good key file. */
  let current: Map<string, Entry> = inline;
  let fileLoaded = cfg.keys_file === undefined;
  const state = { loadedAt: 0, lastError: null as string | null, fileKeys: 0 };

  /** Loads the key file; returns the problem or null. At start a problem fails the policy, later it is logged. */
  const load = (): string | null => {
    const file = cfg.keys_file!;
    const entries = readKeyFile(file);
    if (typeof entries === 'string') return entries;
    const problems: string[] = [];
    const fromFile = buildSet(name, entries, file, problems);
    for (const [hash, e] of inline) {
      if (fromFile.has(hash)) problems.push(`${file}: key "${fromFile.get(hash)!.id}" is also given inline`);
      else if ([...fromFile.values()].some((f) => f.id === e.id)) problems.push(`${file}: key id "${e.id}" is also given inline`);
    }
    if (problems.length) return problems.join('; ');
    current = inline.size === 0 ? fromFile : new Map([...inline, ...fromFile]);
    fileLoaded = true;
    state.loadedAt = Date.now();
    state.lastError = null;
    state.fileKeys = fromFile.size;
    return null;
  };

  if (cfg.keys_file !== undefined) {
    const file = cfg.keys_file;
    const first = load();
    if (first !== null) env.problem([...path, 'keys_file'], first);
    const onChange = (curr: Stats, prev: Stats) => {
      if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino) return;
      const before = current.size;
      const problem = load();
      if (problem !== null) {
        state.lastError = problem;
        log.error({ provider: name, file, err: problem }, 'API key file reload failed; keeping the previous keys');
      } else {
        log.info({ provider: name, file, keys: current.size, before }, 'API keys reloaded');
      }
    };
    watchFile(file, { interval: cfg.reload_interval, persistent: false }, onChange);
    env.onClose(() => unwatchFile(file, onChange));
    env.readiness(`api_keys:${name}`, () => (fileLoaded ? true : `API key file of ${name} not loaded${state.lastError ? `: ${state.lastError}` : ''}`));
  }
  env.status?.(`api_key:${name}`, () => ({
    kind: 'api_key',
    provider: name,
    keys: current.size,
    key_ids: [...current.values()].map((e) => e.id),
    keys_file: cfg.keys_file ?? null,
    last_reload: state.loadedAt || null,
    last_error: state.lastError,
  }));

  const realm = name.replace(/["\\]/g, '');
  const challenge = `ApiKey realm="${realm}", header="${cfg.header}"`;
  const denies = new Map<string, Deny>();
  for (const reason of API_KEY_REASONS) {
    const status = reason === 'api_keys_unavailable' ? 503 : reason === 'api_key_ambiguous' ? 400 : 401;
    denies.set(reason, Object.freeze({ status, reason, headers: Object.freeze(status === 503 ? { 'retry-after': '5' } : { 'www-authenticate': challenge }) }));
  }
  const D = (reason: ApiKeyReason): Deny => denies.get(reason)!;
  const subjectHeader = cfg.subject_header?.toLowerCase() ?? null;
  const ownedHeaders = subjectHeader !== null ? [subjectHeader] : [];
  const forwardKey = cfg.forward_key;

  /** The key from the header (one value; repeated different values are ambiguous), or null. */
  function fromHeader(ctx: RequestContext): string | null | typeof AMBIGUOUS {
    const raw = ctx.requestHeaders[header];
    if (raw === undefined) return null;
    if (typeof raw === 'string') return raw.trim() === '' ? null : raw.trim();
    const values = [...new Set((raw as string[]).map((v) => v.trim()).filter((v) => v !== ''))];
    return values.length === 0 ? null : values.length === 1 ? values[0]! : AMBIGUOUS;
  }

  /** The key from the query parameter (removed from the query sent upstream), or null. */
  function fromQuery(ctx: RequestContext): string | null | typeof AMBIGUOUS {
    if (query === null || ctx.query.length < 2) return null;
    const params = new URLSearchParams(ctx.query.slice(1));
    if (!params.has(query)) return null;
    const values = [...new Set(params.getAll(query).filter((v) => v !== ''))];
    params.delete(query);
    const rest = params.toString();
    ctx.query = rest === '' ? '' : '?' + rest;
    return values.length === 0 ? null : values.length === 1 ? values[0]! : AMBIGUOUS;
  }

  function authenticate(ctx: RequestContext): Verdict {
    const up = ctx.upstreamHeaders;
    if (subjectHeader !== null) delete up[subjectHeader];
    if (!forwardKey) delete up[header];
    const h = fromHeader(ctx);
    const q = fromQuery(ctx);
    if (h === AMBIGUOUS || q === AMBIGUOUS || (h !== null && q !== null && h !== q)) return D('api_key_ambiguous');
    const key = h ?? q;
    if (key === null) return D('api_key_missing');
    if (!fileLoaded) return D('api_keys_unavailable');
    if (key.length > MAX_KEY_LENGTH) return D('api_key_invalid');
    // The Map compares hashes, never the key: timing can at most tell an attacker how the hash of their
    // own guess relates to stored hashes, which says nothing about a key (SHA-256 preimage resistance).
    const entry = current.get(hashApiKey(key));
    if (entry === undefined) return D('api_key_invalid');
    ctx.subject = entry.subject;
    ctx.claims = entry.claims;
    ctx.credential = entry.credential;
    if (subjectHeader !== null) up[subjectHeader] = entry.subject;
    return undefined;
  }

  const grants = grantsReader('roles', 'scopes');
  return {
    name,
    filterName: 'api_key',
    authenticate,
    grants,
    carries: { roles: true, scopes: true },
    ownedHeaders,
    forbidden: forbiddenDenies(),
    describe: () => ({
      provider: name,
      type: 'api_key',
      header: cfg.header,
      query: query,
      forward_key: forwardKey,
      keys_file: cfg.keys_file ?? null,
      keys: current.size,
      key_ids: [...current.values()].map((e) => e.id),
      subject_header: cfg.subject_header ?? null,
    }),
  };
}
