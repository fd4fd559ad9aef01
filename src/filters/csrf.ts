// CSRF protection for unsafe methods (anything but GET, HEAD, OPTIONS, TRACE), in up to three layers:
//  1. Fetch Metadata / Origin: a cross-site `Sec-Fetch-Site` is refused unless its Origin is trusted;
//     without Fetch Metadata the Origin (then the Referer) must be the request's own origin or a trusted one.
//     A request with none of them (curl, server-to-server) passes this layer.
//  2. A static token (`token: ${env:CSRF_TOKEN}`) that the header must carry, compared in constant time.
//  3. Double-submit: the header must equal the value of a cookie (name it `__Host-...`).
import { hash, timingSafeEqual } from 'node:crypto';
import { boolean, object, oneOf, optional, string, withDefault, type Infer, type Path } from '../config/schema.ts';
import { reportDeny, type RequestContext } from '../contract/context.ts';
import { compileOrigins, originListSchema, originOfUrl, type OriginList } from './origins.ts';
import { cookieValues } from '../proxy/cookie.ts';
import { namedPolicies, policyRef, resolveRef } from './policy-ref.ts';
import { defineFilter, deny, type CompileEnv, type Deny } from '../contract/filter.ts';

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const COOKIE_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

const csrfPolicySchema = object(
  {
    check_origin: withDefault(boolean({ description: 'Refuse cross-site unsafe requests by Sec-Fetch-Site, else Origin, else Referer.' }), true),
    trusted_origins: withDefault(originListSchema('Other origins whose unsafe requests are accepted (your frontend on another site). Same syntax as CORS origins.'), []),
    allow_same_site: withDefault(boolean({ description: 'Accept Sec-Fetch-Site: same-site (sibling subdomains) without listing the origin.' }), false),
    token: optional(string({ minLength: 16, description: 'Static token the header must carry (e.g. ${env:CSRF_TOKEN}); compared in constant time.' })),
    double_submit_cookie: optional(string({ pattern: COOKIE_NAME, patternName: 'cookie name', description: 'Double-submit mode: the header must equal this cookie\'s value (use a __Host- name).' })),
    header: withDefault(string({ pattern: HEADER_NAME, patternName: 'header name', description: 'Header carrying the token.' }), 'X-CSRF-Token'),
    mode: withDefault(oneOf(['enforce', 'report'] as const, { description: 'report: evaluate and log what would be refused (warn, with the reason), but let it through; for rolling a policy out.' }), 'enforce'),
  },
  {
    description: 'A CSRF policy.',
    check(p, path, issues) {
      if (p.token !== undefined && p.double_submit_cookie !== undefined) issues.push({ path, message: 'give either "token" or "double_submit_cookie", not both' });
      if (!p.check_origin && p.token === undefined && p.double_submit_cookie === undefined) {
        issues.push({ path, message: 'a CSRF policy that checks neither origin nor token protects nothing' });
      }
    },
  },
);

export type CsrfPolicyConfig = Infer<typeof csrfPolicySchema>;

export interface CompiledCsrf {
  readonly checkOrigin: boolean;
  readonly trusted: OriginList;
  readonly allowSameSite: boolean;
  readonly tokenDigest: Buffer | null;
  readonly cookie: string | null;
  readonly header: string;
  readonly config: CsrfPolicyConfig;
}

/** One-shot SHA-256 (no Hash object per request). */
function digest(value: string): Buffer {
  return hash('sha256', value, 'buffer');
}

/** Constant-time equality of two strings, whatever their lengths (compares SHA-256 digests). */
export function safeEqual(a: string, expected: Buffer): boolean {
  return timingSafeEqual(digest(a), expected);
}

export function compileCsrfPolicy(config: CsrfPolicyConfig, path: Path, env: CompileEnv): CompiledCsrf {
  if (config.token !== undefined && env.mode === 'production' && config.token.length < 32) {
    env.problem([...path, 'token'], 'production: the CSRF token must be at least 32 characters (openssl rand -hex 32)');
  }
  return {
    checkOrigin: config.check_origin,
    trusted: compileOrigins(config.trusted_origins, [...path, 'trusted_origins'], env, 'trusted_origins of a CSRF policy'),
    allowSameSite: config.allow_same_site,
    tokenDigest: config.token === undefined ? null : digest(config.token),
    cookie: config.double_submit_cookie ?? null,
    header: config.header.toLowerCase(),
    config,
  };
}

const CROSS_SITE = deny(403, 'cross_site_request', 'cross-site unsafe requests are refused');
const MISSING = deny(403, 'csrf_token_missing', 'the CSRF token header is missing');
const MISMATCH = deny(403, 'csrf_token_mismatch', 'the CSRF token does not match');

/**
 * Whether `origin` is the request's own: scheme and Host (default port dropped) as the gateway saw them.
 * Behind a trusted proxy, whose Host may be rewritten, scheme and the forwarded host name decide.
 */
function isOwnOrigin(origin: string, ctx: RequestContext): boolean {
  const o = origin.toLowerCase();
  const sep = o.indexOf('://');
  if (sep === -1 || o.slice(0, sep) !== ctx.scheme) return false;
  const hostPort = o.slice(sep + 3);
  let authority = ctx.authority.toLowerCase();
  const defaultPort = ctx.scheme === 'https' ? ':443' : ':80';
  if (authority.endsWith(defaultPort)) authority = authority.slice(0, -defaultPort.length);
  if (hostPort === authority) return true;
  if (!ctx.peerTrusted) return false;
  const close = hostPort.startsWith('[') ? hostPort.indexOf(']') + 1 : -1;
  const colon = close > 0 ? close : hostPort.lastIndexOf(':');
  return (colon === -1 ? hostPort : hostPort.slice(0, colon)) === ctx.host;
}

function originCheck(ctx: RequestContext, p: CompiledCsrf): Deny | undefined {
  const h = ctx.requestHeaders;
  const site = h['sec-fetch-site'];
  const origin = h.origin;
  if (site !== undefined) {
    if (site === 'same-origin' || site === 'none') return undefined;
    if (site === 'same-site' && p.allowSameSite) return undefined;
    // cross-site, same-site not allowed, or anything malformed (duplicates, unknown values)
    if ((site === 'cross-site' || site === 'same-site') && origin !== undefined && origin !== 'null' && p.trusted.has(origin)) return undefined;
    return CROSS_SITE;
  }
  let source = origin;
  if (source === undefined) {
    const referer = h.referer;
    if (referer === undefined) return undefined; // not a browser: nothing to tell
    const fromReferer = originOfUrl(referer);
    if (fromReferer === null) return CROSS_SITE;
    source = fromReferer;
  }
  if (source === 'null') return CROSS_SITE;
  if (isOwnOrigin(source, ctx) || p.trusted.has(source)) return undefined;
  return CROSS_SITE;
}

export const csrf = defineFilter<Record<string, CsrfPolicyConfig>, string | CsrfPolicyConfig, Map<string, CompiledCsrf>>({
  name: 'csrf',
  reasons: ['cross_site_request', 'csrf_token_missing', 'csrf_token_mismatch'],
  stage: 'route',
  globalKey: 'csrf',
  globalSchema: namedPolicies(csrfPolicySchema, 'Named CSRF policies, referenced by routes as `csrf: NAME`.'),
  routeKey: 'csrf',
  routeSchema: policyRef(csrfPolicySchema, 'CSRF policy of the route: a name, an inline policy, or none (exempt).'),
  setup(config, env) {
    const out = new Map<string, CompiledCsrf>();
    for (const [name, policy] of Object.entries(config ?? {})) out.set(name, compileCsrfPolicy(policy, ['csrf', name], env));
    return out;
  },
  compile({ config, shared, routePath, routeName, methods }, env) {
    const policy = resolveRef(config, shared, (c, p) => compileCsrfPolicy(c, p, env), [...routePath, 'csrf'], env, 'CSRF');
    if (policy === null) return null;
    if (methods.length > 0 && methods.every((m) => SAFE_METHODS.has(m))) return null; // nothing unsafe reaches this route
    const { checkOrigin, tokenDigest, cookie, header } = policy;
    const check = (ctx: RequestContext): Deny | undefined => {
      if (SAFE_METHODS.has(ctx.method)) return undefined;
      if (checkOrigin) {
        const v = originCheck(ctx, policy);
        if (v !== undefined) return v;
      }
      if (tokenDigest === null && cookie === null) return undefined;
      const sent = ctx.requestHeaders[header];
      if (sent === undefined || sent === '') return MISSING;
      if (typeof sent !== 'string') return MISMATCH;
      if (tokenDigest !== null) return safeEqual(sent, tokenDigest) ? undefined : MISMATCH;
      const fromCookie = cookieValues(ctx.requestHeaders.cookie, cookie!);
      if (fromCookie.length === 0 || fromCookie[0] === '') return MISSING;
      // Tossed: a second cookie of that name (set by a sibling domain, say) makes neither trustworthy.
      if (fromCookie.length > 1) return MISMATCH;
      return safeEqual(sent, digest(fromCookie[0]!)) ? undefined : MISMATCH;
    };
    const log = env.telemetry.log.child({ filter: 'csrf', route: routeName });
    const report = (ctx: RequestContext): undefined => {
      const v = check(ctx);
      if (v !== undefined) {
        reportDeny(ctx, 'csrf', v.reason);
        log.warn({ request_id: ctx.id, reason: v.reason, method: ctx.method, path: ctx.path }, 'csrf (report mode): would refuse');
      }
      return undefined;
    };
    return {
      name: 'csrf',
      onRequest: policy.config.mode === 'report' ? report : check,
      onResponse: null,
      describe: () => ({
        check_origin: checkOrigin,
        trusted_origins: policy.trusted.entries,
        allow_same_site: policy.allowSameSite,
        mode: policy.config.mode,
        token_mode: tokenDigest !== null ? 'static token' : cookie !== null ? `double submit (cookie ${cookie})` : 'origin only',
        header: policy.config.header,
        ...(tokenDigest !== null ? { token: '********' } : {}),
      }),
    };
  },
});
