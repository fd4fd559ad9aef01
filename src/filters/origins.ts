// Origin allow-lists, shared by CORS and CSRF: exact origins, anchored subdomain patterns
// (`https://*.example.com`), `null` only when listed, `*`; entries may be comma lists from the
// environment (`${env:FRONTEND_ORIGIN}`). Compiled once into a Set and anchored regular expressions.
import { array, dispatch, string, type Path, type Schema } from '../config/schema.ts';
import type { CompileEnv } from '../contract/filter.ts';

const nullOrigin: Schema<string> = { ...string(), parse: () => 'null' };

/** A list of origins; a YAML `null` entry (written unquoted) means the literal "null" origin. */
export function originListSchema(description: string, minItems?: number): Schema<string[]> {
  const entry = dispatch<string>('origin', {}, (v) => (v === null ? nullOrigin : string({ minLength: 1 })));
  return array(entry, { single: true, description, ...(minItems !== undefined ? { minItems } : {}) });
}

export interface OriginList {
  /** `*` listed: every origin. */
  readonly any: boolean;
  /** `null` listed (sandboxed frames, file: pages, some redirects). */
  readonly allowNull: boolean;
  readonly exact: ReadonlySet<string>;
  readonly patterns: readonly RegExp[];
  /** The entries as normalized, for `explain`. */
  readonly entries: readonly string[];
  /** True when `origin` (the header value as sent) is allowed. */
  has(origin: string): boolean;
}

const DEV_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|0\.0\.0\.0|[a-z0-9.-]*\.localhost)$/;
const LABEL = '(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Splits comma lists (from `${env:...}`), trims, drops empties; keeps each entry's index for errors. */
export function expandOrigins(entries: readonly string[]): { value: string; index: number }[] {
  const out: { value: string; index: number }[] = [];
  entries.forEach((entry, index) => {
    for (const part of entry.split(',')) {
      const value = part.trim();
      if (value !== '') out.push({ value, index });
    }
  });
  return out;
}

/**
 * Compiles an origin list. Problems are reported at `path` (the list) + index. In production, `*`, `null`
 * and development origins (localhost, loopback addresses) are refused: `what` names the list in messages.
 */
export function compileOrigins(entries: readonly string[], path: Path, env: CompileEnv, what: string): OriginList {
  let any = false;
  let allowNull = false;
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  const normalized: string[] = [];
  const production = env.mode === 'production';
  for (const { value, index } of expandOrigins(entries)) {
    const at = [...path, index];
    if (value === '*') {
      any = true;
      normalized.push('*');
      if (production) env.problem(at, `production: ${what} must not allow every origin ("*"); list the origins`);
      continue;
    }
    if (value === 'null') {
      allowNull = true;
      normalized.push('null');
      if (production) env.problem(at, `production: ${what} must not allow the "null" origin (sandboxed frames and file: pages send it)`);
      continue;
    }
    const m = /^([a-z][a-z0-9+.-]*):\/\/(\*\.)?([^/?#@]+?)(?::(\d{1,5}))?\/?$/i.exec(value);
    if (!m) {
      env.problem(at, `invalid origin "${value}": write scheme://host[:port] (no path), https://*.example.com, null or *`);
      continue;
    }
    const scheme = m[1]!.toLowerCase();
    const wildcard = m[2] !== undefined;
    const host = m[3]!.toLowerCase();
    let port = m[4];
    if ((scheme === 'https' && port === '443') || (scheme === 'http' && port === '80')) port = undefined;
    if (host.includes('*') || !/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)$/.test(host) || host.startsWith('.') || host.endsWith('.')) {
      env.problem(at, `invalid origin "${value}": "*" may only stand for subdomains, as in https://*.example.com`);
      continue;
    }
    if (wildcard && !host.includes('.')) {
      env.problem(at, `origin pattern "${value}" is too broad: give a registrable domain, as in https://*.example.com`);
      continue;
    }
    const suffix = port === undefined ? '' : `:${port}`;
    if (production && DEV_HOST.test(host)) {
      env.problem(at, `production: ${what} lists the development origin "${value}"`);
    }
    if (wildcard) {
      // One or more DNS labels, then the exact domain and port, anchored at both ends:
      // https://*.example.com matches https://a.example.com, never https://example.com.evil.net.
      patterns.push(new RegExp(`^${escapeRegExp(scheme)}://(?:${LABEL}\\.)+${escapeRegExp(host)}${escapeRegExp(suffix)}$`));
      normalized.push(`${scheme}://*.${host}${suffix}`);
    } else {
      const origin = `${scheme}://${host}${suffix}`;
      exact.add(origin);
      normalized.push(origin);
    }
  }
  const list: OriginList = {
    any,
    allowNull,
    exact,
    patterns,
    entries: normalized,
    has(origin: string): boolean {
      if (any) return true;
      if (origin === 'null') return allowNull;
      const o = origin.toLowerCase();
      if (exact.has(o)) return true;
      for (let i = 0; i < patterns.length; i++) if (patterns[i]!.test(o)) return true;
      return false;
    },
  };
  return list;
}

/** `scheme://host[:port]` of a URL (a Referer), or null when it is not an absolute http(s) URL. */
export function originOfUrl(url: string): string | null {
  const m = /^(https?):\/\/([^/?#]*)/i.exec(url);
  if (!m) return null;
  const hostPort = m[2]!;
  if (hostPort === '' || hostPort.includes('@')) return null;
  return `${m[1]!.toLowerCase()}://${hostPort.toLowerCase()}`;
}
