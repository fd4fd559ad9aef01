// One field of a urlencoded form or a JSON object, read from the body's first bytes (ctx.body) for
// rate-limit keys such as `form:username`. The rules, each chosen so that the gateway never keys on a
// value the application may read differently:
//   - only a body that arrived whole within BODY_FIELD_CAP is read; a longer one has no field (a second
//     copy could follow the cap), nor has a body with a Content-Encoding or another media type;
//   - a field sent twice (`a=1&a=2`, `{"a":1,"a":2}`) is AMBIGUOUS: frameworks pick the first, the last or
//     both, so the filter refuses the request (400 ambiguous_body_field);
//   - form names and values are percent- and `+`-decoded as browsers encode them; JSON member names are
//     compared after unescaping (`"user\u006eame"` is `username`); only top-level JSON members count;
//   - a JSON value that is not a string (number, boolean, null, object, array) or an empty value is
//     absent: the key falls back as `on_missing_key` says.
import type { BodyPrefix, RequestContext } from '../contract/context.ts';

/** The most of a body read for a field: far above any login form, small enough to hold per request. */
export const BODY_FIELD_CAP = 16 * 1024;

export const AMBIGUOUS: unique symbol = Symbol('ambiguous body field');

export type FieldKind = 'form' | 'json';

/** Name → every value sent under it (forms), or name → [value, value...] per occurrence (JSON). */
type Fields = Map<string, unknown[]>;

// Parsed once per body and kind, whatever the number of limits reading it.
const parsed = new WeakMap<BodyPrefix, { form?: Fields | null; json?: Fields | null }>();

function mediaType(value: string | string[] | undefined): string {
  if (typeof value !== 'string') return '';
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
}

/** The fields of a urlencoded body. */
export function formFields(text: string): Fields {
  const fields: Fields = new Map();
  for (const [name, value] of new URLSearchParams(text)) {
    const list = fields.get(name);
    if (list === undefined) fields.set(name, [value]);
    else list.push(value);
  }
  return fields;
}

/**
 * The top-level members of a JSON object, each name with the values of every occurrence (JSON.parse
 * keeps only the last of repeated names, so they are counted by a scan of the already valid text).
 * Null when the text is not JSON or not an object.
 */
export function jsonFields(text: string): Fields | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const object = value as Record<string, unknown>;
  const fields: Fields = new Map();
  let depth = 0;
  let nameNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (depth === 1 && nameNext) {
        const name = JSON.parse(text.slice(i, j + 1)) as string;
        const list = fields.get(name);
        const v = Object.hasOwn(object, name) ? object[name] : undefined;
        if (list === undefined) fields.set(name, [v]);
        else list.push(v); // the values of earlier copies are gone; their count is what matters
        nameNext = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) nameNext = true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      nameNext = true;
    }
  }
  return fields;
}

function fieldsOf(prefix: BodyPrefix, kind: FieldKind): Fields | null {
  let cache = parsed.get(prefix);
  if (cache === undefined) parsed.set(prefix, (cache = {}));
  const known = cache[kind];
  if (known !== undefined) return known;
  const text = prefix.bytes.toString('utf8');
  const fields = kind === 'form' ? formFields(text) : jsonFields(text);
  cache[kind] = fields;
  return fields;
}

/** Whether the request's body is of the media type `kind` reads, unencoded. */
function readable(ctx: RequestContext, kind: FieldKind): boolean {
  const h = ctx.requestHeaders;
  const encoding = h['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') return false;
  const type = mediaType(h['content-type']);
  return kind === 'form' ? type === 'application/x-www-form-urlencoded' : type === 'application/json' || type.endsWith('+json');
}

/**
 * The field `name` of the request body: its value, null when absent (no body read, another media type,
 * a body beyond the cap, not a string, empty), or AMBIGUOUS when the body names it more than once.
 * The body's prefix must have been read (`ctx.body.prefix(BODY_FIELD_CAP)`).
 */
export function bodyField(ctx: RequestContext, kind: FieldKind, name: string): string | null | typeof AMBIGUOUS {
  const prefix = ctx.body?.current ?? null;
  if (prefix === null || !prefix.complete || !readable(ctx, kind)) return null;
  const fields = fieldsOf(prefix, kind);
  const values = fields?.get(name);
  if (values === undefined) return null;
  if (values.length > 1) return AMBIGUOUS;
  const v = values[0];
  return typeof v === 'string' && v !== '' ? v : null;
}
