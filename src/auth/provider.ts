// What every authentication provider (JWT, forward auth) gives the auth filter: a request hook that sets
// `ctx.subject` and `ctx.claims` or denies, the roles and scopes of a verified identity (for `authorize`),
// and the upstream headers it owns (client-sent copies are removed on every route).
import type { RequestContext } from '../contract/context.ts';
import { singleCookie } from '../proxy/cookie.ts';
import type { Deny, Verdict } from '../contract/filter.ts';

export interface Grants {
  readonly roles: ReadonlySet<string>;
  readonly scopes: ReadonlySet<string>;
}

export interface AuthProvider {
  readonly name: string;
  /** Filter name in deny records and metrics: `jwt` or `forward_auth`. */
  readonly filterName: string;
  authenticate(ctx: RequestContext): Verdict | Promise<Verdict>;
  /** Roles and scopes of the identity a successful `authenticate` left in `ctx.claims`. */
  grants(claims: Readonly<Record<string, unknown>>): Grants;
  /** Whether identities of this provider can carry roles and scopes at all (forward auth needs headers for them). */
  readonly carries: { readonly roles: boolean; readonly scopes: boolean };
  /** Lower-case names of upstream headers this provider sets; client copies are always removed. */
  readonly ownedHeaders: readonly string[];
  /** False when `authenticate` calls out (forward auth): `explain` does not run it. Absent: true. */
  readonly explainable?: boolean;
  /** Token-based providers (JWT) expose their steps so one route can accept several issuers. */
  readonly bearer?: BearerSteps;
  /** The 403 answer for authorization failures on routes of this provider, by reason. */
  forbidden(reason: string): Deny;
  describe(): Record<string, unknown>;
}

export interface BearerSteps {
  extract(ctx: RequestContext): Extracted;
  /** Accepted `iss` values, null when any. */
  readonly issuers: ReadonlySet<string> | null;
  /** Applies a cached identity for the token with this cache key; false when not cached. */
  fromCache(ctx: RequestContext, key: string): boolean;
  /** Verifies a token that was not in the cache. */
  verify(ctx: RequestContext, token: string, key: string): Verdict | Promise<Verdict>;
  deny(reason: string): Deny;
  readonly maxSize: number;
}

/** Reads a claim by path: the exact key first (`https://x/roles`), then dot-separated (`realm_access.roles`). */
export function claimAccessor(path: string): (claims: Readonly<Record<string, unknown>>) => unknown {
  const parts = path.split('.');
  if (parts.length === 1) return (claims) => (Object.hasOwn(claims, path) ? claims[path] : undefined);
  return (claims) => {
    if (Object.hasOwn(claims, path)) return claims[path];
    let v: unknown = claims;
    for (const p of parts) {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, p)) return undefined;
      v = (v as Record<string, unknown>)[p];
    }
    return v;
  };
}

/** A list claim: an array of strings, or a space-separated string (`scope: "read write"`). */
export function stringSet(value: unknown): ReadonlySet<string> {
  if (typeof value === 'string') return new Set(value.split(' ').filter((s) => s.length > 0));
  if (Array.isArray(value)) return new Set(value.filter((v): v is string => typeof v === 'string'));
  return EMPTY;
}
const EMPTY: ReadonlySet<string> = new Set();

/** Grants computed once per verified claims object (claims objects are cached with their token). */
export function grantsReader(rolesClaim: string, scopesClaim: string): (claims: Readonly<Record<string, unknown>>) => Grants {
  const roles = claimAccessor(rolesClaim);
  const scopes = claimAccessor(scopesClaim);
  const memo = new WeakMap<object, Grants>();
  return (claims) => {
    let g = memo.get(claims);
    if (g === undefined) {
      g = { roles: stringSet(roles(claims)), scopes: stringSet(scopes(claims)) };
      memo.set(claims, g);
    }
    return g;
  };
}

/**
 * A provider's 403 answers for authorize failures, one frozen Deny per reason made on first use (the
 * reasons are the authorize filter's bounded list, so the map stays small). `headers` adds a provider's
 * own fields, e.g. a Bearer `insufficient_scope` challenge.
 */
export function forbiddenDenies(headers?: (reason: string) => Readonly<Record<string, string>>): (reason: string) => Deny {
  const made = new Map<string, Deny>();
  return (reason) => {
    let d = made.get(reason);
    if (d === undefined) {
      d = Object.freeze(headers ? { status: 403, reason, headers: Object.freeze(headers(reason)) } : { status: 403, reason });
      made.set(reason, d);
    }
    return d;
  };
}

/** Bearer challenge per RFC 6750: `realm`, and `error` / `error_description` when a token was refused. */
export function bearerChallenge(realm: string, error?: 'invalid_token' | 'insufficient_scope' | 'invalid_request', description?: string): string {
  let out = `Bearer realm="${realm}"`;
  if (error) out += `, error="${error}"`;
  if (description) out += `, error_description="${description}"`;
  return out;
}

// ---- token sources ----

export type TokenSource = { header: string; scheme: string } | { cookie: string } | { query: string };

/** Distinct tokens in two places: refused, so the gateway and the app can never read different ones. */
export const AMBIGUOUS = Symbol('ambiguous');
export type Extracted = string | null | typeof AMBIGUOUS;

function fromHeader(name: string, scheme: string): (ctx: RequestContext) => Extracted {
  const key = name.toLowerCase();
  const prefix = scheme === '' ? '' : scheme.toLowerCase() + ' ';
  const exact = scheme === '' ? '' : scheme + ' ';
  const one = (v: string): string | null => {
    if (prefix !== '') {
      if (v.length <= prefix.length) return null;
      // The usual spelling first: no allocation on the hot path.
      if (!v.startsWith(exact) && v.slice(0, prefix.length).toLowerCase() !== prefix) return null;
    }
    const token = v.slice(prefix.length).trim();
    return token === '' ? null : token;
  };
  return (ctx) => {
    const raw = ctx.requestHeaders[key];
    if (raw === undefined) return null;
    if (typeof raw === 'string') return one(raw);
    let found: string | null = null;
    for (const v of raw) {
      const token = one(v);
      if (token === null) continue;
      if (found !== null && found !== token) return AMBIGUOUS;
      found = token;
    }
    return found;
  };
}

function fromCookie(name: string): (ctx: RequestContext) => Extracted {
  return (ctx) => {
    const token = singleCookie(ctx.requestHeaders.cookie, name);
    return token === undefined ? AMBIGUOUS : token;
  };
}

function fromQuery(name: string): (ctx: RequestContext) => Extracted {
  return (ctx) => {
    if (ctx.query.length < 2) return null;
    const all = new URLSearchParams(ctx.query.slice(1)).getAll(name).filter((v) => v !== '');
    if (all.length === 0) return null;
    return all.every((v) => v === all[0]) ? all[0]! : AMBIGUOUS;
  };
}

/** Compiles the sources into one function: the first source with a token wins, a different one elsewhere is ambiguous. */
export function tokenExtractor(sources: readonly TokenSource[]): (ctx: RequestContext) => Extracted {
  const readers = sources.map((s) => ('header' in s ? fromHeader(s.header, s.scheme) : 'cookie' in s ? fromCookie(s.cookie) : fromQuery(s.query)));
  if (readers.length === 1) return readers[0]!;
  return (ctx) => {
    let found: string | null = null;
    for (const read of readers) {
      const t = read(ctx);
      if (t === null) continue;
      if (t === AMBIGUOUS) return AMBIGUOUS;
      if (found !== null && found !== t) return AMBIGUOUS;
      found = t;
    }
    return found;
  };
}
