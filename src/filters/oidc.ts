// OpenID Connect provider: signs browser users in at any OpenID Provider (authorization code flow with
// PKCE S256, `state` bound to a short-lived sealed cookie, `nonce` checked in the ID token) and keeps them
// signed in with a sealed session cookie (or a Redis session shared by replicas). A signed-in request then
// looks exactly like a verified JWT to the rest of the chain: subject, claims, claims_to_headers, roles and
// scopes for `authorize`, rate-limit keys and audit. The provider answers its own paths (callback, login,
// logout) on any route that uses it; navigations without a session are sent to the provider, fetch/XHR
// calls get a 401 with a reason and a hint where to sign in.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  array, boolean, duration, object, oneOf, optional, record, size, string, url, withDefault, type Infer, type Path,
} from '../config/schema.ts';
import { OidcClient, pkceChallenge, randomChecks, type GrantFailure, type Tokens } from '../auth/oidc/client.ts';
import { SessionCodec, clearChunked, cookieNames, presentChunks, readChunked, setChunked, weakSecretProblem, type CookieAttributes } from '../auth/oidc/codec.ts';
import { CookieSessionStore, RedisSessionStore, type Session, type SessionStore } from '../auth/oidc/store.ts';
import { claimAccessor, forbiddenDenies, grantsReader, stringSet, type AuthProvider } from '../auth/provider.ts';
import { TokenCache } from '../auth/token-cache.ts';
import { singleCookie } from '../proxy/cookie.ts';
import type { RequestContext } from '../contract/context.ts';
import { createClient, parseRedisUrl } from '../ratelimit/redis.ts';
import { claimHeaderValue } from './jwt.ts';
import type { CompileEnv, Deny, Verdict } from '../contract/filter.ts';

export const OIDC_REASONS = [
  'oidc_login_redirect', 'oidc_signed_in', 'oidc_signed_out', 'oidc_session_missing', 'oidc_session_invalid',
  'oidc_session_expired', 'oidc_state_invalid', 'oidc_code_invalid', 'oidc_provider_error', 'oidc_id_token_invalid',
  'oidc_user_not_allowed', 'oidc_provider_unavailable', 'oidc_session_store_unavailable', 'claim_header_invalid',
  'method_not_allowed',
] as const;
export type OidcReason = (typeof OIDC_REASONS)[number];

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Authorization request parameters the gateway owns: `auth_params` may not set them. */
const OWN_PARAMS = new Set(['client_id', 'response_type', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'response_mode']);
const PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;
const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

export const oidcProviderSchema = object(
  {
    issuer: url({ protocols: ['https:', 'http:'], description: 'Issuer URL; its /.well-known/openid-configuration is discovered. Production refuses http.' }),
    client_id: string({ minLength: 1, description: 'Client id registered at the provider.' }),
    client_secret: optional(string({ description: 'Client secret (client_secret_basic); use ${env:NAME}.' })),
    private_key_jwt: optional(object({
      key: string({ description: 'Private key (PKCS#8 PEM, or a file path) the client signs its assertions with; ${file:PATH}.' }),
      algorithm: withDefault(oneOf(['RS256', 'PS256', 'ES256', 'EdDSA'] as const, { description: 'Signing algorithm of the key.' }), 'RS256'),
      kid: optional(string({ description: 'Key id the provider knows the key by.' })),
    }, { description: 'Client authentication with a signed JWT (private_key_jwt) instead of a secret.' })),
    issuer_ca: optional(string({ description: 'CA certificate (PEM file path or PEM text) trusted for the provider, besides the system CAs.' })),
    timeout: withDefault(duration({ min: 10, description: 'Timeout of one request to the provider (discovery, token, JWKS).' }), 5_000),
    public_url: optional(url({ protocols: ['https:', 'http:'], description: 'Origin users reach the gateway at (https://app.example.com); the redirect URI is built from it. Absent: from the request (development). Production requires https.' })),
    redirect_path: withDefault(string({ pattern: PATH, patternName: 'absolute path', description: 'Callback path answered by the gateway (register public_url + redirect_path at the provider).' }), '/oauth2/callback'),
    login_path: withDefault(string({ pattern: PATH, patternName: 'absolute path', description: 'Starts a sign-in; `?rd=/path` says where to land (same origin only).' }), '/oauth2/login'),
    logout_path: withDefault(string({ pattern: PATH, patternName: 'absolute path', description: 'Ends the session here and at the provider (RP-initiated logout).' }), '/oauth2/logout'),
    post_logout_redirect: optional(string({ description: 'Where the provider sends the user after logout: an absolute URL, or a path on public_url (register it at the provider). Default /.' })),
    scopes: withDefault(array(string({ pattern: /^[\x21\x23-\x5b\x5d-\x7e]+$/, patternName: 'scope' }), { single: true, description: 'Scopes asked for; openid is always included. offline_access for refresh tokens.' }), ['openid', 'email', 'profile']),
    auth_params: withDefault(record(string(), { description: 'Extra authorization request parameters (prompt, audience, acr_values...).' }), {}),
    id_token_algorithm: withDefault(oneOf(ALGS, { description: 'The one algorithm ID tokens must be signed with (verified against the provider JWKS).' }), 'RS256'),
    clock_skew: withDefault(duration({ description: 'Tolerance for ID token exp and iat.' }), 30_000),
    allowed_email_domains: optional(array(string({ pattern: /^[A-Za-z0-9.-]+$/, patternName: 'domain' }), { single: true, minItems: 1, description: 'Users whose verified `email` is in one of these domains may sign in.' })),
    require_verified_email: withDefault(boolean({ description: 'With allowed_email_domains: require `email_verified: true`.' }), true),
    allowed_groups: optional(array(string(), { single: true, minItems: 1, description: 'Users with one of these groups (in groups_claim) may sign in. With both rules, both must hold.' })),
    groups_claim: withDefault(string({ description: 'Claim holding the user\'s groups (list or space-separated; dotted paths allowed).' }), 'groups'),
    cookie_secrets: array(string(), { single: true, minItems: 1, description: 'Secrets the session cookies are sealed with (256 bits or more): the first seals, all open (rotation). ${env:NAME}.' }),
    cookie_name: optional(string({ pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, patternName: 'cookie name', description: 'Session cookie name; default __Host-portcullis-PROVIDER (always Secure, HttpOnly, SameSite=Lax, Path=/).' })),
    session_store: withDefault(oneOf(['cookie', 'redis'] as const, { description: 'cookie: the session sealed in the cookie, no server state; redis: shared by replicas, logout revokes everywhere.' }), 'cookie'),
    redis: optional(string({ description: 'Redis URL of the session store (redis://, rediss://, redis+sentinel://, redis+cluster://).' })),
    redis_key_prefix: withDefault(string({ description: 'Prefix of the session keys in Redis.' }), 'portcullis:oidc:'),
    idle_timeout: withDefault(duration({ min: 1000, description: 'A session unused this long ends (activity is recorded every quarter of it).' }), 3_600_000),
    absolute_timeout: withDefault(duration({ min: 1000, description: 'A session ends this long after sign-in, whatever the activity.' }), 43_200_000),
    refresh_before: withDefault(duration({ description: 'The access token is refreshed this long before it expires (with a refresh token; without one the session ends at its expiry).' }), 60_000),
    login_timeout: withDefault(duration({ min: 1000, description: 'How long a started sign-in (its state cookie) stays valid.' }), 600_000),
    subject_claim: withDefault(string({ description: 'Claim naming the subject (logs, audit, rate-limit keys).' }), 'sub'),
    roles_claim: withDefault(string({ description: 'Claim holding roles (for authorize).' }), 'roles'),
    scopes_claim: withDefault(string({ description: 'Claim holding scopes (for authorize).' }), 'scope'),
    claims_to_headers: withDefault(record(string({ pattern: HEADER_NAME, patternName: 'header name' }), { description: 'Claim (path) to upstream header; client-sent copies are removed first.' }), {}),
    max_claim_header_size: withDefault(size({ description: 'Longest claim value copied to a header.' }), 1024),
  },
  {
    description: 'An OpenID Connect provider: browser sign-in at the gateway.',
    check(v, path, issues) {
      if (v.client_secret !== undefined && v.private_key_jwt !== undefined) issues.push({ path, message: 'give one of "client_secret", "private_key_jwt"' });
      if (v.session_store === 'redis' && (v.redis === undefined || v.redis === '')) issues.push({ path: [...path, 'redis'], message: 'session_store: redis needs a Redis URL' });
      for (const k of Object.keys(v.auth_params)) {
        if (OWN_PARAMS.has(k)) issues.push({ path: [...path, 'auth_params', k], message: `"${k}" is set by the gateway`, atKey: true });
      }
      const paths = [v.redirect_path, v.login_path, v.logout_path];
      if (new Set(paths).size !== 3) issues.push({ path, message: 'redirect_path, login_path and logout_path must differ' });
      if (v.public_url !== undefined && (v.public_url.pathname !== '/' || v.public_url.search !== '' || v.public_url.username !== '')) issues.push({ path: [...path, 'public_url'], message: 'public_url is an origin (scheme, host, port) without path or query' });
    },
  },
);

export type OidcProviderConfig = Infer<typeof oidcProviderSchema>;

function readPem(value: string): string {
  return value.includes('-----BEGIN') ? value : readFileSync(value, 'utf8');
}

const UNSAFE_HEADER_VALUE = /[\x00-\x1f\x7f]/;
const STATE = /^[A-Za-z0-9_-]{16,128}$/;
/** Unfinished sign-ins a browser may carry before the older ones are cleared. */
const MAX_PENDING_LOGINS = 4;

/** A same-origin return path, or null: absolute path, no `//` or `\` (another host), no control characters. */
export function safeReturnPath(value: string | null): string | null {
  if (value === null || value === '' || value.length > 2048) return null;
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\') || /[\x00-\x20\x7f]/.test(value)) return null;
  try {
    const u = new URL(value, 'https://gateway.invalid');
    if (u.origin !== 'https://gateway.invalid') return null;
    return u.pathname + u.search;
  } catch {
    return null;
  }
}

/** A browser navigation (redirect to sign in) rather than fetch/XHR (401). */
export function isNavigation(ctx: RequestContext): boolean {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return false;
  const mode = ctx.requestHeaders['sec-fetch-mode'];
  if (mode !== undefined) return mode === 'navigate';
  const accept = ctx.requestHeaders.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

export function createOidcProvider(name: string, cfg: OidcProviderConfig, path: Path, env: CompileEnv): AuthProvider {
  const log = env.telemetry.log;
  const prod = env.mode === 'production';

  // ---- production checklist ----
  if (prod) {
    if (cfg.issuer.protocol === 'http:') env.problem([...path, 'issuer'], 'production: the OpenID Provider must be reached over https');
    if (cfg.public_url === undefined) env.problem(path, 'production: set public_url (https://...) so the redirect URI is fixed, not taken from the Host header');
    else if (cfg.public_url.protocol === 'http:') env.problem([...path, 'public_url'], 'production: the redirect URI would be plain http; public_url must be https');
    if (cfg.post_logout_redirect?.startsWith('http:')) env.problem([...path, 'post_logout_redirect'], 'production: post_logout_redirect must be https');
    if (cfg.allowed_email_domains === undefined && cfg.allowed_groups === undefined) {
      env.problem(path, 'production: every account of the provider could sign in; set allowed_email_domains or allowed_groups');
    }
  }
  cfg.cookie_secrets.forEach((s, i) => {
    const weak = weakSecretProblem(s);
    if (weak === null) return;
    if (prod) env.problem([...path, 'cookie_secrets', i], `production: cookie secret ${weak}`);
    else log.warn({ provider: name, secret: i }, `cookie secret ${weak}: refused in production mode`);
  });
  if (cfg.post_logout_redirect !== undefined && !cfg.post_logout_redirect.startsWith('/') && !/^https?:\/\/[^/]/.test(cfg.post_logout_redirect)) {
    env.problem([...path, 'post_logout_redirect'], 'expected an absolute http(s) URL or a path starting with /');
  }

  let ca: string | undefined;
  if (cfg.issuer_ca !== undefined) {
    try {
      ca = readPem(cfg.issuer_ca);
    } catch (err) {
      env.problem([...path, 'issuer_ca'], `cannot read CA file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  let privateKey: { pem: string; algorithm: string; kid: string | null } | null = null;
  if (cfg.private_key_jwt !== undefined) {
    try {
      privateKey = { pem: readPem(cfg.private_key_jwt.key), algorithm: cfg.private_key_jwt.algorithm, kid: cfg.private_key_jwt.kid ?? null };
    } catch (err) {
      env.problem([...path, 'private_key_jwt', 'key'], `cannot read key file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }

  // ---- stores and the provider client ----
  const codec = new SessionCodec(cfg.cookie_secrets, name);
  let store: SessionStore;
  if (cfg.session_store === 'redis' && cfg.redis !== undefined && cfg.redis !== '') {
    const target = parseRedisUrl(cfg.redis);
    if (typeof target === 'string') {
      env.problem([...path, 'redis'], `invalid Redis URL: ${target}`);
      store = new CookieSessionStore(codec);
    } else {
      const client = createClient(target, { connectTimeoutMs: cfg.timeout, commandTimeoutMs: cfg.timeout });
      client.on('error', () => undefined); // state is read from client.status; ioredis reconnects
      const redisStore = new RedisSessionStore(codec, client, cfg.redis_key_prefix + name + ':', cfg.idle_timeout, cfg.timeout);
      store = redisStore;
      env.onReady(new Promise<void>((resolve) => setImmediate(resolve)).then(() => client.connect()).then(() => undefined, (err: unknown) => {
        log.warn({ provider: name, err: err instanceof Error ? err.message : String(err) }, 'OIDC session store: Redis unavailable');
      }));
      env.onClose(() => redisStore.close());
      env.readiness(`oidc_sessions:${name}`, () => (redisStore.available ? true : 'redis unavailable'));
    }
  } else {
    store = new CookieSessionStore(codec);
  }

  const client = new OidcClient({
    provider: name,
    issuer: cfg.issuer,
    clientId: cfg.client_id,
    clientSecret: cfg.client_secret ?? null,
    privateKey,
    idTokenAlgorithm: cfg.id_token_algorithm,
    clockSkewSeconds: Math.ceil(cfg.clock_skew / 1000),
    ca,
    timeoutMs: cfg.timeout,
    log,
  });
  env.onReady(client.start());
  env.onClose(() => client.close());
  env.readiness(`oidc:${name}`, () => (client.config !== null ? true : `OpenID Provider of ${name} not discovered${client.lastError ? `: ${client.lastError}` : ''}`));

  // ---- compiled values ----
  const cookieName = cfg.cookie_name ?? `__Host-portcullis-${name}`;
  const loginCookiePrefix = `${cookieName}-login-`;
  const attrs = (maxAgeMs: number | null): CookieAttributes => ({ secure: true, maxAge: maxAgeMs === null ? null : Math.max(0, Math.ceil(maxAgeMs / 1000)), path: '/', sameSite: 'Lax' });
  const scope = [...new Set(['openid', ...cfg.scopes])].join(' ');
  const realm = name.replace(/["\\]/g, '');
  const subjectOf = claimAccessor(cfg.subject_claim);
  const claimHeaders = Object.entries(cfg.claims_to_headers).map(([claim, header]) => [claimAccessor(claim), header.toLowerCase()] as const);
  const ownedHeaders = claimHeaders.map(([, h]) => h);
  const maxHeader = cfg.max_claim_header_size;
  const domains = cfg.allowed_email_domains ? new Set(cfg.allowed_email_domains.map((d) => d.toLowerCase())) : null;
  const groups = cfg.allowed_groups ? new Set(cfg.allowed_groups) : null;
  const groupsOf = claimAccessor(cfg.groups_claim);
  const touchEvery = Math.floor(cfg.idle_timeout / 4);
  const ownPaths = new Set([cfg.redirect_path, cfg.login_path, cfg.logout_path]);

  const challenge = (reason: string) => `OIDC realm="${realm}", error="${reason}", login_uri="${cfg.login_path}"`;
  const D = (reason: OidcReason, extra?: Record<string, string | string[]>, detail?: string): Deny => {
    const status = reason === 'oidc_provider_unavailable' || reason === 'oidc_session_store_unavailable' ? 503
      : reason === 'oidc_user_not_allowed' ? 403
        : reason === 'oidc_state_invalid' ? 400
          : reason === 'method_not_allowed' ? 405
            : reason === 'oidc_login_redirect' || reason === 'oidc_signed_in' || reason === 'oidc_signed_out' ? 302 : 401;
    const headers: Record<string, string | string[]> = { ...(status === 401 ? { 'www-authenticate': challenge(reason) } : {}), ...(status === 503 ? { 'retry-after': '5' } : {}), ...extra };
    return detail === undefined ? { status, reason, headers } : { status, reason, headers, detail };
  };

  const origin = (ctx: RequestContext): string => (cfg.public_url !== undefined ? cfg.public_url.origin : `${ctx.scheme}://${ctx.authority}`);
  const redirectUri = (ctx: RequestContext): string => origin(ctx) + cfg.redirect_path;
  const cookieOf = (ctx: RequestContext) => (n: string) => singleCookie(ctx.requestHeaders.cookie, n);
  const presentSession = (ctx: RequestContext) => presentChunks(cookieNames(ctx.requestHeaders.cookie), cookieName);
  const loginCookieName = (state: string) => loginCookiePrefix + createHash('sha256').update(state).digest('base64url').slice(0, 12);
  const loginCookies = (ctx: RequestContext) => [...new Set(cookieNames(ctx.requestHeaders.cookie).filter((n) => n.startsWith(loginCookiePrefix)))];
  const clearLine = (n: string) => `${n}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax`;

  function allowed(claims: Record<string, unknown>): string | null {
    if (domains !== null) {
      const email = claims.email;
      if (typeof email !== 'string' || !email.includes('@')) return 'no email claim';
      if (cfg.require_verified_email && claims.email_verified !== true) return 'email not verified';
      if (!domains.has(email.slice(email.lastIndexOf('@') + 1).toLowerCase())) return 'email domain not allowed';
    }
    if (groups !== null) {
      let ok = false;
      for (const g of stringSet(groupsOf(claims))) if (groups.has(g)) ok = true;
      if (!ok) return 'no allowed group';
    }
    return null;
  }

  // ---- sign in ----
  async function startLogin(ctx: RequestContext, returnTo: string, extraCookies: string[] = []): Promise<Verdict> {
    if (client.config === null) return D('oidc_provider_unavailable');
    const checks = randomChecks();
    const now = Date.now();
    const sealed = await codec.seal('login', { state: checks.state, nonce: checks.nonce, verifier: checks.verifier, rd: returnTo }, now + cfg.login_timeout);
    const location = client.authorizationUrl({
      ...cfg.auth_params,
      redirect_uri: redirectUri(ctx),
      scope,
      state: checks.state,
      nonce: checks.nonce,
      code_challenge: await pkceChallenge(checks.verifier),
      code_challenge_method: 'S256',
    });
    const cookie = `${loginCookieName(checks.state)}=${sealed}; Path=/; Max-Age=${Math.ceil(cfg.login_timeout / 1000)}; HttpOnly; Secure; SameSite=Lax`;
    // Sign-ins started and never finished pile up (one cookie each, for login_timeout): past a few, the
    // older ones are cleared so the Cookie header never grows toward the header size limit.
    const pending = loginCookies(ctx);
    const stale = pending.length >= MAX_PENDING_LOGINS ? pending.map(clearLine) : [];
    return D('oidc_login_redirect', { location: location.href, 'set-cookie': [...stale, cookie, ...extraCookies] });
  }

  async function callback(ctx: RequestContext): Promise<Verdict> {
    if (ctx.method !== 'GET') return D('method_not_allowed', { allow: 'GET' });
    const params = new URLSearchParams(ctx.query.slice(1));
    const state = params.getAll('state');
    if (state.length !== 1 || !STATE.test(state[0]!)) return D('oidc_state_invalid', undefined, 'the callback has no valid state');
    const loginCookie = loginCookieName(state[0]!);
    const clearLogin = clearLine(loginCookie);
    const raw = singleCookie(ctx.requestHeaders.cookie, loginCookie);
    if (raw === null || raw === undefined) return D('oidc_state_invalid', { 'set-cookie': [clearLogin] }, 'no sign-in was started in this browser for this state (or it expired)');
    const login = await codec.open('login', raw);
    if (typeof login === 'string' || login.state !== state[0] || typeof login.nonce !== 'string' || typeof login.verifier !== 'string') {
      return D('oidc_state_invalid', { 'set-cookie': [clearLogin] }, 'the sign-in state does not match (or expired)');
    }
    if (params.has('error')) {
      const code = /^[\x20-\x7e]{1,64}$/.test(params.get('error')!) ? params.get('error')! : 'error';
      return D('oidc_provider_error', { 'set-cookie': [clearLogin] }, `the provider answered ${code}`);
    }
    if (params.getAll('code').length !== 1) return D('oidc_code_invalid', { 'set-cookie': [clearLogin] }, 'the callback has no code');
    if (client.config === null) return D('oidc_provider_unavailable');
    const current = new URL(redirectUri(ctx) + ctx.query);
    const result = await client.exchange(current, { verifier: login.verifier, state: state[0]!, nonce: login.nonce });
    if ('kind' in result) return grantFailure(result, [clearLogin], 'oidc_code_invalid');
    const claims = result.claims!;
    const refused = allowed(claims);
    if (refused !== null) {
      log.info({ provider: name, sub: claims.sub, why: refused }, 'OIDC sign-in refused by the allowed-user rules');
      return D('oidc_user_not_allowed', { 'set-cookie': [clearLogin] }, refused);
    }
    const now = Date.now();
    const session: Session = {
      sub: String(claims.sub),
      claims,
      created: now,
      seen: now,
      expires: expiryOf(result, now),
      rt: result.refreshToken,
      idt: result.idToken,
      end: now + cfg.absolute_timeout,
    };
    let value: string;
    try {
      value = await store.save(session);
    } catch {
      return D('oidc_session_store_unavailable');
    }
    const rd = typeof login.rd === 'string' ? safeReturnPath(login.rd) ?? '/' : '/';
    return D('oidc_signed_in', { location: rd, 'set-cookie': [...setChunked(cookieName, value, attrs(session.end - now), presentSession(ctx)), clearLogin] });
  }

  function expiryOf(t: Tokens, now: number): number {
    if (t.expiresIn !== null) return now + t.expiresIn * 1000;
    const exp = t.claims?.exp;
    return typeof exp === 'number' ? exp * 1000 : now + 300_000;
  }

  function grantFailure(f: GrantFailure, cookies: string[], rejected: OidcReason): Deny {
    if (f.kind === 'unavailable') {
      log.warn({ provider: name, err: f.message }, 'OpenID Provider unavailable');
      return D('oidc_provider_unavailable', { 'set-cookie': cookies });
    }
    if (f.kind === 'rejected') return D(rejected, { 'set-cookie': cookies }, `the provider answered ${f.error}`);
    log.warn({ provider: name, err: f.message }, 'OIDC: the provider\'s answer did not verify');
    return D('oidc_id_token_invalid', { 'set-cookie': cookies });
  }

  // ---- sign out ----
  async function logout(ctx: RequestContext): Promise<Verdict> {
    if (ctx.method !== 'GET' && ctx.method !== 'POST') return D('method_not_allowed', { allow: 'GET, POST' });
    const raw = readChunked(cookieOf(ctx), cookieName);
    let idt: string | null = null;
    if (typeof raw === 'string') {
      const s = await store.load(raw);
      if (s === 'unavailable') return D('oidc_session_store_unavailable');
      if (typeof s !== 'string') {
        idt = s.idt;
        try {
          await store.remove(s);
        } catch {
          return D('oidc_session_store_unavailable');
        }
      }
    }
    const after = cfg.post_logout_redirect === undefined ? origin(ctx) + '/' : cfg.post_logout_redirect.startsWith('/') ? origin(ctx) + cfg.post_logout_redirect : cfg.post_logout_redirect;
    const end = client.config === null ? null : client.endSessionUrl({ post_logout_redirect_uri: after, ...(idt !== null ? { id_token_hint: idt } : { client_id: cfg.client_id }) });
    return D('oidc_signed_out', { location: end?.href ?? after, 'set-cookie': clearChunked(cookieName, attrs(0), presentSession(ctx)) });
  }

  // ---- signed-in requests ----
  // Refreshes in flight and just done, by refresh token: parallel requests with the same (old) cookie use
  // one refresh, and its result, instead of spending the refresh token twice (a rotating provider would
  // take the reuse for theft and revoke the grant).
  const refreshing = new Map<string, Promise<Session | Deny>>();
  const refreshed = new TokenCache<Session>(10_000);

  async function refresh(s: Session, now: number): Promise<Session | Deny> {
    // Keyed by the session state being refreshed (its refresh token and expiry): the requests that carry
    // the same expiring cookie share it; a later state (a refreshed cookie) refreshes on its own.
    const key = createHash('sha256').update(`${s.rt}\0${s.expires}`).digest('base64url');
    const done = refreshed.get(key, now);
    if (done !== undefined) return done;
    let p = refreshing.get(key);
    if (p === undefined) {
      p = (async (): Promise<Session | Deny> => {
        if (client.config === null) return D('oidc_provider_unavailable');
        const r = await client.refresh(s.rt!);
        if ('kind' in r) {
          if (r.kind === 'unavailable' && now < s.expires) return s; // still valid: try again on a later request
          if (r.kind === 'rejected') return D('oidc_session_expired', undefined, 'the provider refused the refresh token');
          return grantFailure(r, [], 'oidc_session_expired');
        }
        const claims = r.claims !== null ? { ...s.claims, ...r.claims } : s.claims;
        if (allowed(claims) !== null) return D('oidc_user_not_allowed');
        const next: Session = { ...s, claims, seen: now, expires: expiryOf(r, now), rt: r.refreshToken ?? s.rt, idt: r.idToken ?? s.idt };
        refreshed.set(key, next, now + 60_000);
        return next;
      })().finally(() => refreshing.delete(key));
      refreshing.set(key, p);
    }
    return p;
  }

  function accept(ctx: RequestContext, s: Session): Verdict {
    const claims = Object.freeze(s.claims);
    const headers: (readonly [string, string])[] = [];
    for (const [read, header] of claimHeaders) {
      const v = read(claims);
      if (v === undefined || v === null) continue;
      const text = claimHeaderValue(v);
      if (text === null || text.length > maxHeader || UNSAFE_HEADER_VALUE.test(text)) return D('claim_header_invalid');
      headers.push([header, text]);
    }
    const sub = subjectOf(claims);
    ctx.subject = typeof sub === 'string' ? sub : s.sub;
    ctx.claims = claims;
    const up = ctx.upstreamHeaders;
    for (let i = 0; i < headers.length; i++) up[headers[i]![0]] = headers[i]![1];
    return undefined;
  }

  /** No usable session: navigations go to the provider, other calls get 401 with the reason. */
  function noSession(ctx: RequestContext, reason: 'oidc_session_missing' | 'oidc_session_invalid' | 'oidc_session_expired', present: boolean): Verdict | Promise<Verdict> {
    const clear = present ? clearChunked(cookieName, attrs(0), presentSession(ctx)) : [];
    if (isNavigation(ctx)) return startLogin(ctx, safeReturnPath(ctx.path + ctx.query) ?? '/', clear);
    return D(reason, clear.length ? { 'set-cookie': clear } : undefined);
  }

  async function withSession(ctx: RequestContext, raw: string): Promise<Verdict> {
    const loaded = await store.load(raw);
    if (loaded === 'unavailable') return D('oidc_session_store_unavailable');
    if (loaded === 'invalid' || loaded === 'expired') return noSession(ctx, loaded === 'invalid' ? 'oidc_session_invalid' : 'oidc_session_expired', true);
    let s = loaded;
    const now = Date.now();
    if (now >= s.end || now - s.seen >= cfg.idle_timeout) {
      if (store.kind === 'redis') await store.remove(s).catch(() => undefined);
      return noSession(ctx, 'oidc_session_expired', true);
    }
    // The allowed-user rules hold on every request: a policy that narrows them ends sessions made before.
    if (allowed(s.claims) !== null) return D('oidc_user_not_allowed');
    let changed = false;
    if (now >= s.expires - cfg.refresh_before) {
      if (s.rt === null) {
        if (now >= s.expires) return noSession(ctx, 'oidc_session_expired', true);
      } else {
        const r = await refresh(s, now);
        if ('status' in r) {
          if (r.reason === 'oidc_session_expired' || r.reason === 'oidc_user_not_allowed') {
            if (store.kind === 'redis') await store.remove(s).catch(() => undefined);
            return r.reason === 'oidc_session_expired' ? noSession(ctx, 'oidc_session_expired', true) : r;
          }
          return r;
        }
        changed = r !== s;
        s = r;
      }
    }
    if (!changed && now - s.seen >= touchEvery) {
      s = { ...s, seen: now };
      changed = true;
    }
    const verdict = accept(ctx, s);
    if (verdict !== undefined || !changed) return verdict;
    let value: string;
    try {
      value = await store.save(s);
    } catch {
      return D('oidc_session_store_unavailable');
    }
    if (store.kind === 'cookie') {
      const lines = setChunked(cookieName, value, attrs(s.end - now), presentSession(ctx));
      const prev = ctx.responseHeaders['set-cookie'];
      ctx.responseHeaders['set-cookie'] = prev === undefined ? lines : [...(Array.isArray(prev) ? prev : [prev]), ...lines];
    }
    return undefined;
  }

  function authenticate(ctx: RequestContext): Verdict | Promise<Verdict> {
    const up = ctx.upstreamHeaders;
    for (let i = 0; i < ownedHeaders.length; i++) delete up[ownedHeaders[i]!];
    // The session cookies are the gateway's: the app never sees them.
    if (ctx.requestHeaders.cookie !== undefined) stripOwnCookies(up);
    if (ownPaths.has(ctx.path)) {
      if (ctx.path === cfg.redirect_path) return callback(ctx);
      if (ctx.path === cfg.logout_path) return logout(ctx);
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return D('method_not_allowed', { allow: 'GET' });
      const rd = safeReturnPath(new URLSearchParams(ctx.query.slice(1)).get('rd'));
      return startLogin(ctx, rd !== null && !ownPaths.has(rd.split('?')[0]!) ? rd : '/');
    }
    const raw = readChunked(cookieOf(ctx), cookieName);
    if (raw === null) return noSession(ctx, 'oidc_session_missing', false);
    if (raw === undefined) return noSession(ctx, 'oidc_session_invalid', true);
    return withSession(ctx, raw);
  }

  /** Removes the session and sign-in cookies from the Cookie header sent upstream. */
  function stripOwnCookies(up: RequestContext['upstreamHeaders']): void {
    const c = up.cookie;
    if (c === undefined) return;
    const text = Array.isArray(c) ? c.join('; ') : c;
    if (!text.includes(cookieName)) return;
    const kept = text.split(';').filter((pair) => {
      const n = pair.slice(0, pair.indexOf('=')).trim();
      return !(n === cookieName || n.startsWith(cookieName + '.') || n.startsWith(loginCookiePrefix));
    });
    if (kept.length === 0) delete up.cookie;
    else up.cookie = kept.map((p) => p.trim()).join('; ');
  }

  const grants = grantsReader(cfg.roles_claim, cfg.scopes_claim);
  return {
    name,
    filterName: 'oidc',
    authenticate,
    grants,
    carries: { roles: true, scopes: true },
    ownedHeaders,
    forbidden: forbiddenDenies(),
    describe: () => ({
      provider: name,
      type: 'oidc',
      issuer: cfg.issuer.href,
      client_id: cfg.client_id,
      client_auth: privateKey !== null ? 'private_key_jwt' : cfg.client_secret !== undefined ? 'client_secret_basic' : 'none',
      public_url: cfg.public_url?.origin ?? null,
      redirect_path: cfg.redirect_path,
      login_path: cfg.login_path,
      logout_path: cfg.logout_path,
      scopes: scope,
      id_token_algorithm: cfg.id_token_algorithm,
      allowed_email_domains: cfg.allowed_email_domains ?? null,
      allowed_groups: cfg.allowed_groups ?? null,
      cookie: cookieName,
      cookie_secrets: cfg.cookie_secrets.length,
      session_store: store.kind,
      idle_timeout_ms: cfg.idle_timeout,
      absolute_timeout_ms: cfg.absolute_timeout,
      refresh_before_ms: cfg.refresh_before,
      claims_to_headers: cfg.claims_to_headers,
    }),
  };
}
