// JWT provider: tokens from the configured sources, verified against keys imported once and pinned to
// their algorithms (inline secrets and public keys, or a remote JWKS), claims checked (exp required, nbf,
// iat, skew, iss, aud, required claims, maximum lifetime), then cached until their `exp` so a hot token
// costs one hash and one lookup. Every refusal is a 401 with a Bearer challenge naming the reason.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { webcrypto } from 'node:crypto';
import {
  array, boolean, duration, integer, object, oneOf, optional, record, size, string, url, withDefault, type Infer, type Path,
} from '../config/schema.ts';
import { parseStrictJson } from '../auth/json.ts';
import { JwksSource, keySetOf, type KeySet } from '../auth/jwks.ts';
import { JwksFileSource, readJwksFile } from '../auth/jwks-file.ts';
import { JWS_ALGORITHMS, KeyError, algorithmsFor, fingerprintOf, importKey, kindOf, publicKey, secretKey, type JwsAlgorithm, type VerificationKey } from '../auth/keys.ts';
import { AMBIGUOUS, bearerChallenge, claimAccessor, forbiddenDenies, grantsReader, tokenExtractor, type AuthProvider, type TokenSource } from '../auth/provider.ts';
import { TokenCache, tokenKey } from '../auth/token-cache.ts';
import type { RequestContext } from '../contract/context.ts';
import type { CompileEnv, Deny, Verdict } from '../contract/filter.ts';

export const JWT_REASONS = [
  'token_missing', 'token_ambiguous', 'token_too_large', 'token_malformed', 'token_algorithm_invalid', 'token_header_invalid',
  'token_key_unknown', 'token_signature_invalid', 'token_expired', 'token_not_yet_valid', 'token_issued_in_future',
  'token_lifetime_too_long', 'token_issuer_invalid', 'token_audience_invalid', 'token_claim_missing', 'claim_header_invalid',
  'jwks_unavailable',
] as const;
export type JwtReason = (typeof JWT_REASONS)[number];

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const tokenSourceSchema = object(
  {
    header: optional(string({ pattern: HEADER_NAME, patternName: 'header name', description: 'Header carrying the token.' })),
    scheme: optional(string({ pattern: /^[A-Za-z0-9._-]*$/, patternName: 'auth scheme', description: 'Scheme before the token in the header ("Bearer"); "" for the bare token. Default Bearer.' })),
    cookie: optional(string({ pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, patternName: 'cookie name', description: 'Cookie carrying the token.' })),
    query: optional(string({ pattern: /^[A-Za-z0-9._-]+$/, patternName: 'parameter name', description: 'Query parameter carrying the token (tokens in URLs end up in logs: only when you must).' })),
  },
  {
    description: 'One place a token may come from: exactly one of header, cookie, query.',
    check(v, path, issues) {
      const n = [v.header, v.cookie, v.query].filter((x) => x !== undefined).length;
      if (n !== 1) issues.push({ path, message: 'give exactly one of "header", "cookie", "query"' });
      else if (v.scheme !== undefined && v.header === undefined) issues.push({ path: [...path, 'scheme'], message: '"scheme" goes with "header"', atKey: true });
    },
  },
);

const keySchema = object(
  {
    kid: optional(string({ description: 'Key id matched against the token header `kid`; tokens without a kid try every key of their algorithm.' })),
    algorithm: optional(oneOf(JWS_ALGORITHMS, { description: 'The one algorithm this key verifies; default: the provider algorithms that fit the key.' })),
    secret: optional(string({ description: 'HMAC secret (HS256/384/512), at least 256 bits; use ${env:NAME} or ${file:PATH}.' })),
    secret_encoding: withDefault(oneOf(['utf8', 'base64', 'base64url', 'hex'] as const, { description: 'How `secret` is written.' }), 'utf8'),
    public_key: optional(string({ description: 'Public key (RSA, EC, Ed25519) as PEM or JWK JSON; ${file:PATH} to read a file.' })),
  },
  {
    description: 'A verification key.',
    check(v, path, issues) {
      if ((v.secret === undefined) === (v.public_key === undefined)) issues.push({ path, message: 'give exactly one of "secret", "public_key"' });
    },
  },
);

export const jwtProviderSchema = object(
  {
    issuer: optional(array(string(), { single: true, description: 'Accepted `iss` values; any when absent.' })),
    audience: optional(array(string(), { single: true, description: 'Accepted `aud` values (one must match); not checked when absent.' })),
    algorithms: array(oneOf(JWS_ALGORITHMS), { single: true, minItems: 1, description: 'Algorithms accepted; each key is pinned to those that fit it. Never taken from the token.' }),
    keys: optional(array(keySchema, { description: 'Inline keys (several for rotation with overlap).' })),
    jwks_url: optional(url({ protocols: ['https:', 'http:'], description: 'Remote JSON Web Key Set.' })),
    jwks_file: optional(string({ description: 'JSON Web Key Set in a local file (a mounted Secret or ConfigMap); re-read when it changes, the last good set kept when a new one is broken.' })),
    jwks_ca: optional(string({ description: 'CA certificate (PEM file path or PEM text) trusted for jwks_url, besides the system CAs.' })),
    jwks_timeout: withDefault(duration({ min: 10, description: 'Timeout of one JWKS fetch.' }), 5_000),
    jwks_min_refresh: withDefault(duration({ min: 10, description: 'Shortest background refresh interval, whatever Cache-Control says.' }), 60_000),
    jwks_max_refresh: withDefault(duration({ min: 10, description: 'Longest background refresh interval (used when there is no Cache-Control max-age).' }), 3_600_000),
    jwks_unknown_kid_interval: withDefault(duration({ min: 0, description: 'A token with an unknown kid re-fetches the JWKS at most once per this interval.' }), 30_000),
    require_exp: withDefault(boolean({ description: 'Refuse tokens without `exp`. Production mode refuses `false`.' }), true),
    clock_skew: withDefault(duration({ description: 'Tolerance for exp, nbf and iat.' }), 30_000),
    max_token_lifetime: optional(duration({ min: 1000, description: 'Refuse tokens whose exp - iat is longer (they then need iat).' })),
    required_claims: withDefault(array(string(), { single: true, description: 'Claims that must be present.' }), []),
    max_token_size: withDefault(size({ description: 'Longest token accepted.' }), 8 * 1024),
    token_from: withDefault(array(tokenSourceSchema, { minItems: 1, description: 'Where tokens come from, in priority order; distinct tokens in two places are refused.' }), [{ header: 'Authorization', scheme: undefined, cookie: undefined, query: undefined }]),
    subject_claim: withDefault(string({ description: 'Claim naming the subject (logs, audit, rate-limit keys).' }), 'sub'),
    roles_claim: withDefault(string({ description: 'Claim holding roles: a list or space-separated string; dotted paths (realm_access.roles) allowed.' }), 'roles'),
    scopes_claim: withDefault(string({ description: 'Claim holding scopes (space-separated string or list).' }), 'scope'),
    claims_to_headers: withDefault(record(string({ pattern: HEADER_NAME, patternName: 'header name' }), { description: 'Claim (path) to upstream header; client-sent copies are removed first.' }), {}),
    max_claim_header_size: withDefault(size({ description: 'Longest claim value copied to a header; longer values, or any with CR/LF, refuse the request.' }), 1024),
    cache_size: withDefault(integer({ min: 0, description: 'Verified tokens kept (LRU, each until its exp); 0 disables the cache.' }), 20_000),
  },
  {
    description: 'A JWT provider.',
    check(v, path, issues) {
      if (!v.keys?.length && v.jwks_url === undefined && v.jwks_file === undefined) issues.push({ path, message: 'give "keys", "jwks_url" or "jwks_file"' });
      if (v.jwks_url !== undefined && v.jwks_file !== undefined) issues.push({ path: [...path, 'jwks_file'], message: 'give "jwks_url" or "jwks_file", not both' });
      if (v.jwks_min_refresh > v.jwks_max_refresh) issues.push({ path: [...path, 'jwks_min_refresh'], message: 'must not exceed jwks_max_refresh' });
    },
  },
);

export type JwtProviderConfig = Infer<typeof jwtProviderSchema>;

interface Verified {
  readonly subject: string | null;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly headers: readonly (readonly [string, string])[];
}

const B64URL = /^[A-Za-z0-9_-]+$/;
const FORBIDDEN_HEADER_PARAMS = ['jku', 'x5u', 'jwk', 'x5c'];
const UNSAFE_HEADER_VALUE = /[\x00-\x1f\x7f]/;

function decodeSegment(segment: string): Record<string, unknown> | null {
  let parsed: unknown;
  try {
    parsed = parseStrictJson(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
}

function readPem(value: string): string {
  return value.includes('-----BEGIN') ? value : readFileSync(value, 'utf8');
}

/** Builds a JWT provider; problems are reported through `env.problem` at `path`. */
// jose is loaded when the first JWT provider is compiled, not at start: a policy without JWT does not pay
// its memory (about 15 MB of RSS).
const requireModule = createRequire(import.meta.url);
let jose: typeof import('jose') | null = null;

/**
 * The header form of a claim: a string as is, a list of strings joined with `,` (what apps split), any
 * other value as JSON. A list element that holds a `,`, is empty or has surrounding whitespace would read
 * as other elements once split (`["user,admin"]` as two roles): such a claim has no faithful header form,
 * and null refuses the token (`claim_header_invalid`).
 */
export function claimHeaderValue(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) {
    for (const x of v as string[]) if (x === '' || x.includes(',') || x.trim() !== x) return null;
    return v.join(',');
  }
  return JSON.stringify(v);
}

export function createJwtProvider(name: string, cfg: JwtProviderConfig, path: Path, env: CompileEnv): AuthProvider {
  jose ??= requireModule('jose') as typeof import('jose');
  const { compactVerify } = jose;
  const algorithms = [...new Set(cfg.algorithms)] as JwsAlgorithm[];
  const metrics = env.telemetry.metrics;
  const cacheCounter = metrics.counter('portcullis_jwt_cache_total', 'Token verifications answered from the verified-token cache (hit) or verified (miss).', ['provider', 'result']);
  const hits = cacheCounter.labels({ provider: name, result: 'hit' });
  const misses = cacheCounter.labels({ provider: name, result: 'miss' });
  const cache = new TokenCache<Verified>(cfg.cache_size);

  // Inline keys, imported once.
  const inline: VerificationKey[] = [];
  (cfg.keys ?? []).forEach((k, i) => {
    const kpath = [...path, 'keys', i];
    try {
      const material = k.secret !== undefined ? secretKey(k.secret, k.secret_encoding) : publicKey(k.public_key!);
      const kind = kindOf(material);
      const algs = k.algorithm !== undefined ? [k.algorithm] : algorithmsFor(kind, algorithms);
      if (k.algorithm !== undefined && !algorithms.includes(k.algorithm)) {
        env.problem([...kpath, 'algorithm'], `algorithm ${k.algorithm} is not in the provider's algorithms (${algorithms.join(', ')})`);
        return;
      }
      const key = importKey(k.kid ?? null, material, algs, fingerprintOf(material));
      if (key.kind === 'secret' && key.bits < 256) {
        if (env.mode === 'production') env.problem([...kpath, 'secret'], `production: HMAC secret has ${key.bits} bits, at least 256 are required (portcullis secrets generate)`);
        else env.telemetry.log.warn({ provider: name, key: i, bits: key.bits }, 'HMAC secret shorter than 256 bits: refused in production mode');
      }
      inline.push(key);
    } catch (err) {
      if (err instanceof KeyError) env.problem(kpath, `key: ${err.message}`);
      else throw err;
    }
  });
  const kids = new Set<string>();
  for (const k of inline) {
    if (k.kid === null) continue;
    if (kids.has(k.kid)) env.problem([...path, 'keys'], `duplicate kid "${k.kid}"`);
    kids.add(k.kid);
  }

  if (env.mode === 'production') {
    if (!cfg.require_exp) env.problem([...path, 'require_exp'], 'production: tokens without exp never expire; require_exp must be true');
    if (cfg.jwks_url?.protocol === 'http:') env.problem([...path, 'jwks_url'], 'production: the JWKS must be fetched over https');
    if (cfg.token_from.some((s) => s.query !== undefined)) env.telemetry.log.warn({ provider: name }, 'tokens accepted in the query string end up in access logs of every hop');
  }

  const inlineSet: KeySet = keySetOf(inline);
  let jwks: JwksSource | JwksFileSource | null = null;
  if (cfg.jwks_url !== undefined) {
    let ca: string | undefined;
    if (cfg.jwks_ca !== undefined) {
      try {
        ca = readPem(cfg.jwks_ca);
      } catch (err) {
        env.problem([...path, 'jwks_ca'], `cannot read CA file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
    }
    const fetches = metrics.counter('portcullis_jwks_fetches_total', 'JWKS fetches by provider and result (success, unchanged, failure).', ['provider', 'result']);
    const bound = { success: fetches.labels({ provider: name, result: 'success' }), unchanged: fetches.labels({ provider: name, result: 'unchanged' }), failure: fetches.labels({ provider: name, result: 'failure' }) };
    jwks = new JwksSource({
      provider: name,
      url: cfg.jwks_url,
      ca,
      timeoutMs: cfg.jwks_timeout,
      minRefreshMs: cfg.jwks_min_refresh,
      maxRefreshMs: cfg.jwks_max_refresh,
      unknownKidIntervalMs: cfg.jwks_unknown_kid_interval,
      algorithms,
      log: env.telemetry.log,
      count: (r) => bound[r].inc(),
      onChange: () => cache.clear(),
    });
    const source = jwks;
    env.onReady(source.start());
    env.onClose(() => source.close());
    env.status?.(`jwt:${name}`, () => ({
      kind: 'jwt',
      provider: name,
      source: 'jwks',
      url: source.url,
      key_ids: (source.keys?.all ?? []).map((k) => k.kid ?? '(no kid)'),
      inline_key_ids: inline.map((k) => k.kid ?? '(no kid)'),
      last_refresh: source.lastSuccessAt,
      last_attempt: source.lastAttemptAt,
      last_error: source.lastError,
    }));
    env.readiness(`jwks:${name}`, () => (source.keys !== null ? true : `JWKS of provider ${name} not loaded${source.lastError ? `: ${source.lastError}` : ''}`));
  }

  if (cfg.jwks_file !== undefined) {
    let initial: KeySet | null = null;
    try {
      initial = readJwksFile(cfg.jwks_file, algorithms);
    } catch (err) {
      env.problem([...path, 'jwks_file'], (err as Error).message);
    }
    if (initial !== null) {
      const source = new JwksFileSource({ provider: name, file: cfg.jwks_file, algorithms, log: env.telemetry.log, onChange: () => cache.clear() }, initial);
      jwks = source;
      env.onReady(source.start());
      env.onClose(() => source.close());
      env.status?.(`jwt:${name}`, () => ({
        kind: 'jwt',
        provider: name,
        source: 'jwks_file',
        file: source.file,
        key_ids: source.keys.all.map((k) => k.kid ?? '(no kid)'),
        inline_key_ids: inline.map((k) => k.kid ?? '(no kid)'),
        last_refresh: source.lastSuccessAt,
        last_attempt: source.lastAttemptAt,
        last_error: source.lastError,
      }));
    }
  }

  if (jwks === null) env.status?.(`jwt:${name}`, () => ({ kind: 'jwt', provider: name, source: 'inline', key_ids: inline.map((k) => k.kid ?? '(no kid)') }));

  // Deny answers, built once.
  const realm = name.replace(/["\\]/g, '');
  const denies = new Map<string, Deny>();
  for (const reason of JWT_REASONS) {
    // RFC 6750 3.1: more than one way of sending a token is invalid_request, answered 400.
    const status = reason === 'jwks_unavailable' ? 503 : reason === 'token_ambiguous' ? 400 : 401;
    const challenge = reason === 'token_missing' ? bearerChallenge(realm) : reason === 'token_ambiguous' ? bearerChallenge(realm, 'invalid_request', reason) : bearerChallenge(realm, 'invalid_token', reason);
    denies.set(reason, Object.freeze({ status, reason, headers: Object.freeze(status === 503 ? { 'retry-after': '5' } : { 'www-authenticate': challenge }) }));
  }
  const D = (reason: JwtReason): Deny => denies.get(reason)!;

  const extract = tokenExtractor(cfg.token_from.map((s): TokenSource => (s.header !== undefined ? { header: s.header, scheme: s.scheme ?? 'Bearer' } : s.cookie !== undefined ? { cookie: s.cookie } : { query: s.query! })));
  const subjectOf = claimAccessor(cfg.subject_claim);
  const claimHeaders = Object.entries(cfg.claims_to_headers).map(([claim, header]) => [claimAccessor(claim), header.toLowerCase()] as const);
  const ownedHeaders = claimHeaders.map(([, h]) => h);
  const skew = cfg.clock_skew / 1000;
  const maxLifetime = cfg.max_token_lifetime !== undefined ? cfg.max_token_lifetime / 1000 : null;
  const issuers = cfg.issuer ? new Set(cfg.issuer) : null;
  const audiences = cfg.audience ? new Set(cfg.audience) : null;
  const required = cfg.required_claims;
  const maxHeader = cfg.max_claim_header_size;
  const maxSize = cfg.max_token_size;

  // The keys a token is checked against: inline keys, the last good JWKS, or both (merged once per change).
  let lastRemote: KeySet | null = null;
  let merged: KeySet | null = null;
  const keysNow = (): KeySet | null => {
    if (jwks === null) return inlineSet;
    const remote = jwks.keys;
    if (remote === null) return inline.length ? inlineSet : null;
    if (inline.length === 0) return remote;
    if (remote !== lastRemote) {
      lastRemote = remote;
      merged = keySetOf([...inline, ...remote.all]);
    }
    return merged;
  };

  /** Claim checks on a payload whose signature verified. */
  function checkClaims(payload: Record<string, unknown>, nowSec: number): Verified | Deny {
    const { exp, nbf, iat } = payload;
    if ((exp !== undefined && typeof exp !== 'number') || (nbf !== undefined && typeof nbf !== 'number') || (iat !== undefined && typeof iat !== 'number')) return D('token_malformed');
    if (exp === undefined && cfg.require_exp) return D('token_claim_missing');
    if (exp !== undefined && nowSec > exp + skew) return D('token_expired');
    if (nbf !== undefined && nowSec + skew < nbf) return D('token_not_yet_valid');
    if (iat !== undefined && nowSec + skew < iat) return D('token_issued_in_future');
    if (maxLifetime !== null) {
      if (iat === undefined || exp === undefined) return D('token_claim_missing');
      if (exp - iat > maxLifetime) return D('token_lifetime_too_long');
    }
    if (issuers !== null && (typeof payload.iss !== 'string' || !issuers.has(payload.iss))) return D('token_issuer_invalid');
    if (audiences !== null) {
      const aud = payload.aud;
      const ok = typeof aud === 'string' ? audiences.has(aud) : Array.isArray(aud) && aud.some((a) => typeof a === 'string' && audiences.has(a));
      if (!ok) return D('token_audience_invalid');
    }
    for (const c of required) if (!Object.hasOwn(payload, c) || payload[c] === null) return D('token_claim_missing');
    const sub = subjectOf(payload);
    if (sub !== undefined && typeof sub !== 'string') return D('token_malformed');
    const headers: (readonly [string, string])[] = [];
    for (const [read, header] of claimHeaders) {
      const v = read(payload);
      if (v === undefined || v === null) continue;
      const text = claimHeaderValue(v);
      if (text === null || text.length > maxHeader || UNSAFE_HEADER_VALUE.test(text)) return D('claim_header_invalid');
      headers.push([header, text]);
    }
    return { subject: sub ?? null, claims: Object.freeze(payload), headers };
  }

  async function verifySignature(token: string, candidates: readonly VerificationKey[], alg: string): Promise<boolean> {
    for (const key of candidates) {
      const cryptoKey = key.byAlg.get(alg) as webcrypto.CryptoKey;
      try {
        await compactVerify(token, cryptoKey as unknown as Parameters<typeof import('jose').compactVerify>[1] & object, { algorithms: [alg] });
        return true;
      } catch {
        // try the next candidate (rotation: several keys without kid)
      }
    }
    return false;
  }

  function candidatesFor(set: KeySet, kid: string | undefined, alg: string): VerificationKey[] | null {
    if (kid !== undefined) {
      const k = set.byKid.get(kid);
      return k !== undefined && k.byAlg.has(alg) ? [k] : k !== undefined ? [] : null;
    }
    return set.all.filter((k) => k.byAlg.has(alg));
  }

  async function finish(token: string, key: string, payload: Record<string, unknown>, candidates: readonly VerificationKey[], alg: string, ctx: RequestContext): Promise<Verdict> {
    if (!(await verifySignature(token, candidates, alg))) return D('token_signature_invalid');
    const now = Date.now();
    const result = checkClaims(payload, now / 1000);
    if ('status' in result) return result;
    const exp = payload.exp as number | undefined;
    cache.set(key, result, exp !== undefined ? exp * 1000 : now + 300_000);
    return accept(ctx, result);
  }

  async function afterRefetch(pending: Promise<boolean>, token: string, key: string, payload: Record<string, unknown>, kid: string | undefined, alg: string, ctx: RequestContext): Promise<Verdict> {
    await pending;
    const set = keysNow();
    if (set === null) return D('jwks_unavailable');
    const candidates = candidatesFor(set, kid, alg);
    if (candidates === null || candidates.length === 0) return D('token_key_unknown');
    return finish(token, key, payload, candidates, alg, ctx);
  }

  function accept(ctx: RequestContext, v: Verified): undefined {
    ctx.subject = v.subject;
    ctx.claims = v.claims;
    const h = ctx.upstreamHeaders;
    for (let i = 0; i < v.headers.length; i++) h[v.headers[i]![0]] = v.headers[i]![1];
    return undefined;
  }

  const allowedAlgs = new Set<string>(algorithms);

  function authenticate(ctx: RequestContext): Verdict | Promise<Verdict> {
    const up = ctx.upstreamHeaders;
    for (let i = 0; i < ownedHeaders.length; i++) delete up[ownedHeaders[i]!];
    const token = extract(ctx);
    if (token === null) return D('token_missing');
    if (token === AMBIGUOUS) return D('token_ambiguous');
    if (token.length > maxSize) return D('token_too_large');
    const key = tokenKey(token);
    if (fromCache(ctx, key)) return undefined;
    return verify(ctx, token, key);
  }

  /** A cache hit applies the cached identity and returns true. */
  function fromCache(ctx: RequestContext, key: string): boolean {
    const hit = cache.get(key, Date.now());
    if (hit === undefined) return false;
    hits.inc();
    accept(ctx, hit);
    return true;
  }

  /** Full verification of a token that is not in the cache (`key` is its cache key). */
  function verify(ctx: RequestContext, token: string, key: string): Verdict | Promise<Verdict> {
    misses.inc();
    if (token.length > maxSize) return D('token_too_large');
    const parts = token.split('.');
    if (parts.length !== 3 || !B64URL.test(parts[0]!) || !B64URL.test(parts[1]!)) return D('token_malformed');
    if (parts[2] === '' ) return D('token_signature_invalid');
    if (!B64URL.test(parts[2]!)) return D('token_malformed');
    const header = decodeSegment(parts[0]!);
    if (header === null) return D('token_malformed');
    const alg = header.alg;
    if (typeof alg !== 'string' || !allowedAlgs.has(alg)) return D('token_algorithm_invalid');
    for (const p of FORBIDDEN_HEADER_PARAMS) if (Object.hasOwn(header, p)) return D('token_header_invalid');
    if (Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) return D('token_header_invalid');
    const kid = header.kid;
    if (kid !== undefined && (typeof kid !== 'string' || kid.length > 256)) return D('token_header_invalid');
    const payload = decodeSegment(parts[1]!);
    if (payload === null) return D('token_malformed');

    const set = keysNow();
    const candidates = set === null ? null : candidatesFor(set, kid, alg);
    if (candidates === null || (candidates.length === 0 && kid === undefined && jwks !== null)) {
      if (jwks === null) return D('token_key_unknown');
      const pending = jwks.refetch();
      if (pending === null) return set === null ? D('jwks_unavailable') : D('token_key_unknown');
      return afterRefetch(pending, token, key, payload, kid, alg, ctx);
    }
    if (candidates.length === 0) return D(kid !== undefined ? 'token_algorithm_invalid' : 'token_key_unknown');
    return finish(token, key, payload, candidates, alg, ctx);
  }

  const grants = grantsReader(cfg.roles_claim, cfg.scopes_claim);
  return {
    name,
    filterName: 'jwt',
    authenticate,
    grants,
    carries: { roles: true, scopes: true },
    ownedHeaders,
    bearer: { extract, issuers, fromCache, verify, deny: D, maxSize },
    forbidden: forbiddenDenies((reason) => ({ 'www-authenticate': bearerChallenge(realm, 'insufficient_scope', reason) })),
    describe: () => ({
      provider: name,
      type: 'jwt',
      issuer: cfg.issuer ?? null,
      audience: cfg.audience ?? null,
      algorithms,
      keys: inline.map((k) => ({ kid: k.kid, kind: k.kind, algorithms: [...k.byAlg.keys()] })),
      jwks_url: cfg.jwks_url?.href ?? null,
      jwks_file: cfg.jwks_file ?? null,
      require_exp: cfg.require_exp,
      clock_skew_ms: cfg.clock_skew,
      max_token_lifetime_ms: cfg.max_token_lifetime ?? null,
      token_from: cfg.token_from.map((s) => (s.header !== undefined ? `header ${s.header} ${s.scheme ?? 'Bearer'}` : s.cookie !== undefined ? `cookie ${s.cookie}` : `query ${s.query}`)),
      claims_to_headers: cfg.claims_to_headers,
      cache_size: cfg.cache_size,
    }),
  };
}
