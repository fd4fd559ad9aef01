// A small schema language for the policy file. Each schema parses a plain value (as read from YAML),
// reports every problem with the path where it stands, and documents itself (description + default), so
// the reference docs can be generated from the same source that validates.
import { parseCidr, type Cidr } from './cidr.ts';

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

export interface Issue {
  path: Path;
  message: string;
  /** Point at the key itself rather than its value (unknown keys). */
  atKey?: boolean;
}

export interface DocNode {
  type: string;
  description?: string;
  default?: unknown;
  fields?: Record<string, DocNode>;
  items?: DocNode;
  required?: boolean;
}

export interface Schema<T> {
  readonly type: string;
  readonly description: string | undefined;
  /** True when the key may be absent (the parsed value is then `default` or undefined). */
  readonly optional: boolean;
  readonly defaultValue: T | undefined;
  parse(value: unknown, path: Path, issues: Issue[]): T | undefined;
  doc(): DocNode;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

interface Meta {
  description?: string;
}

function base<T>(
  type: string,
  meta: Meta,
  parse: (value: unknown, path: Path, issues: Issue[]) => T | undefined,
  doc: () => Partial<DocNode> = () => ({}),
): Schema<T> {
  return {
    type,
    description: meta.description,
    optional: false,
    defaultValue: undefined,
    parse,
    doc: () => ({ type, description: meta.description, ...doc() }),
  };
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** The key may be absent; the parsed value is then `undefined`. */
export function optional<T>(schema: Schema<T>): Schema<T | undefined> {
  return { ...schema, optional: true, doc: () => ({ ...schema.doc(), required: false }) };
}

/** The key may be absent; the parsed value is then `value`. */
export function withDefault<T>(schema: Schema<T>, value: T): Schema<T> {
  return { ...schema, optional: true, defaultValue: value, doc: () => ({ ...schema.doc(), default: value }) };
}

export function string(meta: Meta & { pattern?: RegExp; patternName?: string; minLength?: number } = {}): Schema<string> {
  return base('string', meta, (value, path, issues) => {
    if (typeof value === 'number' || typeof value === 'boolean') value = String(value);
    if (typeof value !== 'string') {
      issues.push({ path, message: `expected a string, got ${typeName(value)}` });
      return undefined;
    }
    if (meta.minLength !== undefined && value.length < meta.minLength) {
      issues.push({ path, message: `must be at least ${meta.minLength} characters long` });
      return undefined;
    }
    if (meta.pattern && !meta.pattern.test(value)) {
      issues.push({ path, message: `${JSON.stringify(value)} is not a valid ${meta.patternName ?? 'value'}` });
      return undefined;
    }
    return value;
  });
}

export function boolean(meta: Meta = {}): Schema<boolean> {
  return base('boolean', meta, (value, path, issues) => {
    if (typeof value !== 'boolean') {
      issues.push({ path, message: `expected true or false, got ${typeName(value)}` });
      return undefined;
    }
    return value;
  });
}

export function integer(meta: Meta & { min?: number; max?: number } = {}): Schema<number> {
  return base('integer', meta, (value, path, issues) => {
    // `limit: ${env:RATE_LIMIT_PER_MINUTE}` substitutes a string: plain decimal digits count as the integer.
    if (typeof value === 'string' && /^(0|[1-9][0-9]{0,14})$/.test(value)) value = Number(value);
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      issues.push({ path, message: `expected an integer, got ${typeName(value)}` });
      return undefined;
    }
    if (meta.min !== undefined && value < meta.min) {
      issues.push({ path, message: `must be at least ${meta.min}, got ${value}` });
      return undefined;
    }
    if (meta.max !== undefined && value > meta.max) {
      issues.push({ path, message: `must be at most ${meta.max}, got ${value}` });
      return undefined;
    }
    return value;
  });
}

export function oneOf<const V extends string>(values: readonly V[], meta: Meta = {}): Schema<V> {
  return base(
    values.map((v) => JSON.stringify(v)).join(' | '),
    meta,
    (value, path, issues) => {
      if (typeof value === 'string' && (values as readonly string[]).includes(value)) return value as V;
      const near = typeof value === 'string' ? nearest(value, values) : undefined;
      issues.push({
        path,
        message: `expected one of ${values.join(', ')}, got ${typeName(value)}${near ? ` (did you mean "${near}"?)` : ''}`,
      });
      return undefined;
    },
  );
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, y: 31_536_000_000 };

/** Parses `500ms`, `2s`, `1m`, `1h`, `7d`, `1y` (or several, `1m30s`) into milliseconds. */
export function parseDuration(text: string): number | undefined {
  let rest = text.trim();
  if (rest === '') return undefined;
  if (rest === '0') return 0;
  let total = 0;
  const part = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|y)/;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * (DURATION_UNITS[m[2]!] ?? 0);
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/** A duration written as `500ms`, `2s`, `1m`, `1h`, `7d`; parsed to milliseconds. */
export function duration(meta: Meta & { min?: number } = {}): Schema<number> {
  return base('duration', meta, (value, path, issues) => {
    const ms = typeof value === 'string' ? parseDuration(value) : undefined;
    if (ms === undefined) {
      issues.push({ path, message: `invalid duration ${typeName(value)}: write a number with a unit, e.g. 500ms, 2s, 1m, 1h, 7d` });
      return undefined;
    }
    if (meta.min !== undefined && ms < meta.min) {
      issues.push({ path, message: `duration must be at least ${meta.min}ms` });
      return undefined;
    }
    return ms;
  });
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

/** A byte size: an integer, or `64KiB`, `10MiB`, `1MB`. */
export function size(meta: Meta = {}): Schema<number> {
  return base('size', meta, (value, path, issues) => {
    const n = parseSize(value);
    if (n === undefined) {
      issues.push({ path, message: `invalid size ${typeName(value)}: write bytes or a unit, e.g. 16KiB, 10MiB, 1MB` });
      return undefined;
    }
    return n;
  });
}

export function cidr(meta: Meta = {}): Schema<Cidr> {
  return base('cidr', meta, (value, path, issues) => {
    const parsed = typeof value === 'string' ? parseCidr(value) : undefined;
    if (!parsed) {
      issues.push({ path, message: `invalid CIDR ${typeName(value)}: write an address or a range, e.g. 10.0.0.0/8, ::1, fd00::/8` });
      return undefined;
    }
    return parsed;
  });
}

export function url(meta: Meta & { protocols?: readonly string[] } = {}): Schema<URL> {
  return base('url', meta, (value, path, issues) => {
    if (typeof value !== 'string') {
      issues.push({ path, message: `expected a URL, got ${typeName(value)}` });
      return undefined;
    }
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      issues.push({ path, message: 'invalid URL' });
      return undefined;
    }
    if (meta.protocols && !meta.protocols.includes(parsed.protocol)) {
      issues.push({ path, message: `URL scheme must be one of ${meta.protocols.map((p) => p.replace(':', '')).join(', ')}` });
      return undefined;
    }
    return parsed;
  });
}

/** A list; a single value is accepted as a list of one when `single` is set. */
export function array<T>(item: Schema<T>, meta: Meta & { single?: boolean; minItems?: number } = {}): Schema<T[]> {
  return base(
    `list of ${item.type}`,
    meta,
    (value, path, issues) => {
      if (!Array.isArray(value)) {
        if (meta.single && value !== null && value !== undefined && typeof value !== 'object') value = [value];
        else {
          issues.push({ path, message: `expected a list, got ${typeName(value)}` });
          return undefined;
        }
      }
      const list = value as unknown[];
      if (meta.minItems !== undefined && list.length < meta.minItems) {
        issues.push({ path, message: `expected at least ${meta.minItems} item(s)` });
        return undefined;
      }
      const out: T[] = [];
      let ok = true;
      list.forEach((entry, i) => {
        const parsed = item.parse(entry, [...path, i], issues);
        if (parsed === undefined) ok = false;
        else out.push(parsed);
      });
      return ok ? out : undefined;
    },
    () => ({ items: item.doc() }),
  );
}

/** A mapping from user-chosen names to values of one schema (named upstreams, named policies...). */
export function record<T>(item: Schema<T>, meta: Meta & { keyPattern?: RegExp } = {}): Schema<Record<string, T>> {
  return base(
    `mapping of name to ${item.type}`,
    meta,
    (value, path, issues) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        issues.push({ path, message: `expected a mapping, got ${typeName(value)}` });
        return undefined;
      }
      const out: Record<string, T> = Object.create(null) as Record<string, T>;
      let ok = true;
      for (const [key, entry] of Object.entries(value)) {
        if (meta.keyPattern && !meta.keyPattern.test(key)) {
          issues.push({ path: [...path, key], message: `invalid name "${key}": use letters, digits, "_" and "-"`, atKey: true });
          ok = false;
          continue;
        }
        const parsed = item.parse(entry, [...path, key], issues);
        if (parsed === undefined) ok = false;
        else out[key] = parsed;
      }
      return ok ? out : undefined;
    },
    () => ({ items: item.doc() }),
  );
}

type Fields = Record<string, Schema<unknown>>;
export type ObjectOf<F extends Fields> = { [K in keyof F]: Infer<F[K]> };

/** A mapping with known keys. Unknown keys are errors that name the nearest valid key. */
export function object<F extends Fields>(
  fields: F,
  meta: Meta & { check?: (value: ObjectOf<F>, path: Path, issues: Issue[]) => void } = {},
): Schema<ObjectOf<F>> {
  return base(
    'mapping',
    meta,
    (value, path, issues) => {
      if (value === null || value === undefined) value = {};
      if (typeof value !== 'object' || Array.isArray(value)) {
        issues.push({ path, message: `expected a mapping, got ${typeName(value)}` });
        return undefined;
      }
      const input = value as Record<string, unknown>;
      const names = Object.keys(fields);
      let ok = true;
      for (const key of Object.keys(input)) {
        if (!Object.hasOwn(fields, key)) {
          const near = nearest(key, names);
          issues.push({
            path: [...path, key],
            message: `unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`,
            atKey: true,
          });
          ok = false;
        }
      }
      const out: Record<string, unknown> = {};
      for (const [key, schema] of Object.entries(fields)) {
        const raw = input[key];
        if (raw === undefined || raw === null) {
          if (!schema.optional) {
            issues.push({ path, message: `missing required key "${key}"` });
            ok = false;
          }
          out[key] = schema.defaultValue;
          continue;
        }
        const parsed = schema.parse(raw, [...path, key], issues);
        if (parsed === undefined) ok = false;
        out[key] = parsed;
      }
      if (!ok) return undefined;
      const result = out as ObjectOf<F>;
      if (meta.check) {
        const before = issues.length;
        meta.check(result, path, issues);
        if (issues.length > before) return undefined;
      }
      return result;
    },
    () => ({ fields: Object.fromEntries(Object.entries(fields).map(([k, s]) => [k, { ...s.doc(), required: !s.optional }])) }),
  );
}

/**
 * Either of two schemas chosen by the value's shape: a string (a reference to a named policy) or a mapping
 * (an inline policy), for instance.
 */
export function either<A, B>(
  whenString: Schema<A>,
  whenObject: Schema<B>,
  meta: Meta = {},
): Schema<A | B> {
  return base(
    `${whenString.type} or ${whenObject.type}`,
    meta,
    (value, path, issues) =>
      typeof value === 'string' || typeof value === 'boolean' || typeof value === 'number' || Array.isArray(value)
        ? whenString.parse(value, path, issues)
        : whenObject.parse(value, path, issues),
  );
}

/** A value whose schema depends on its shape (a number or "auto", say). */
export function dispatch<T>(type: string, meta: Meta, pick: (value: unknown) => Schema<T>): Schema<T> {
  return base(type, meta, (value, path, issues) => pick(value).parse(value, path, issues));
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3))) return best;
  // A word that is part of a valid name (`prefix` for `path_prefix`) is a likely abbreviation.
  if (word.length >= 3) {
    for (const candidate of candidates) if (candidate.toLowerCase().includes(word.toLowerCase())) return candidate;
  }
  return undefined;
}
