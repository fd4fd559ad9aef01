// CORS: named policies (`cors: { web: {...} }` at the top, `cors: web` on a route). Preflights are answered
// by the gateway and never forwarded; an allowed origin gets Access-Control-* on every answer of the route
// (the upstream's own Access-Control-* are replaced); a disallowed origin gets none, and its preflight 403
// `origin_not_allowed`, as does its WebSocket handshake. `Vary: Origin` goes on every answer whose headers
// depend on the origin.
import { array, boolean, duration, object, oneOf, string, withDefault, type Infer, type Path } from '../config/schema.ts';
import { reportDeny, type HeaderMap } from '../contract/context.ts';
import { compileOrigins, originListSchema, type OriginList } from './origins.ts';
import { namedPolicies, policyRef, resolveRef } from './policy-ref.ts';
import { defineFilter, deny, type CompileEnv, type Deny } from '../contract/filter.ts';

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const METHOD = /^[A-Za-z]+$/;

const corsPolicySchema = object(
  {
    origins: originListSchema(
      'Allowed origins: https://app.example.com, https://*.example.com (subdomains only), null, or * (not with credentials; refused in production). Entries may be comma lists, e.g. ${env:FRONTEND_ORIGIN}.',
      1,
    ),
    methods: withDefault(array(string({ pattern: METHOD, patternName: 'HTTP method' }), { single: true, description: 'Methods a preflight may ask for.' }), ['GET', 'HEAD', 'POST']),
    allow_headers: withDefault(array(string({ pattern: HEADER_NAME, patternName: 'header name' }), { single: true, description: 'Request headers a preflight may ask for.' }), ['Authorization', 'Content-Type']),
    expose_headers: withDefault(array(string({ pattern: HEADER_NAME, patternName: 'header name' }), { single: true, description: 'Response headers scripts of an allowed origin may read.' }), []),
    credentials: withDefault(boolean({ description: 'Allow cookies and Authorization on cross-origin requests (Access-Control-Allow-Credentials).' }), false),
    max_age: withDefault(duration({ description: 'How long browsers may cache a preflight answer (browsers cap it: Chromium at 2h).' }), 600_000),
    mode: withDefault(oneOf(['enforce', 'report'] as const, { description: 'report: the policy only watches. Preflights and requests go to the upstream as if the route had no CORS (it answers preflights and sets Access-Control-* itself, as before the gateway did); what the policy would refuse (a preflight\'s origin, method or headers, a WebSocket handshake from a disallowed origin) is counted and logged as a reported deny. For moving CORS from an app to the gateway.' }), 'enforce'),
  },
  { description: 'A CORS policy.' },
);

export type CorsPolicyConfig = Infer<typeof corsPolicySchema>;

const ACA_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-expose-headers',
  'access-control-max-age',
  'access-control-allow-private-network',
] as const;

const UPGRADE_REFUSED = deny(403, 'origin_not_allowed', 'this origin may not open a WebSocket on this route');
const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';

/** A CORS policy compiled once: sets, precomputed header values. */
export interface CompiledCors {
  readonly origins: OriginList;
  readonly wildcard: boolean;
  readonly credentials: boolean;
  readonly methods: ReadonlySet<string>;
  readonly headers: ReadonlySet<string>;
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly exposeHeaders: string;
  readonly maxAge: string;
  readonly config: CorsPolicyConfig;
}

export function compileCorsPolicy(config: CorsPolicyConfig, path: Path, env: CompileEnv): CompiledCors {
  const origins = compileOrigins(config.origins, [...path, 'origins'], env, 'a CORS policy');
  if (origins.any && config.credentials) {
    env.problem([...path, 'credentials'], 'a CORS policy cannot allow every origin ("*") with credentials: list the origins');
  }
  const methods = [...new Set(config.methods.map((m) => m.toUpperCase()))];
  const headers = [...new Set(config.allow_headers.map((h) => h.toLowerCase()))];
  return {
    origins,
    wildcard: origins.any && !config.credentials,
    credentials: config.credentials,
    methods: new Set(methods),
    headers: new Set(headers),
    allowMethods: methods.join(', '),
    allowHeaders: config.allow_headers.join(', '),
    exposeHeaders: config.expose_headers.join(', '),
    maxAge: String(Math.floor(config.max_age / 1000)),
    config,
  };
}

/** Adds `token` to a Vary value unless it is there already (or `*`). */
export function appendVary(current: string | string[] | undefined, token: string): string {
  if (current === undefined || current === '') return token;
  const text = Array.isArray(current) ? current.join(', ') : current;
  const lower = text.toLowerCase();
  if (lower === '*') return text;
  for (const part of lower.split(',')) if (part.trim() === token.toLowerCase()) return text;
  return `${text}, ${token}`;
}

/** Every requested header (comma list) is in the allowed set. */
function headersAllowed(requested: string, allowed: ReadonlySet<string>): boolean {
  for (const part of requested.split(',')) {
    const name = part.trim().toLowerCase();
    if (name !== '' && !allowed.has(name)) return false;
  }
  return true;
}

export const cors = defineFilter<Record<string, CorsPolicyConfig>, string | CorsPolicyConfig, Map<string, CompiledCors>>({
  name: 'cors',
  reasons: ['origin_not_allowed', 'cors_method_not_allowed', 'cors_headers_not_allowed'],
  stage: 'route',
  globalKey: 'cors',
  globalSchema: namedPolicies(corsPolicySchema, 'Named CORS policies, referenced by routes as `cors: NAME`.'),
  routeKey: 'cors',
  routeSchema: policyRef(corsPolicySchema, 'CORS policy of the route: a name, an inline policy, or none.'),
  setup(config, env) {
    const out = new Map<string, CompiledCors>();
    for (const [name, policy] of Object.entries(config ?? {})) out.set(name, compileCorsPolicy(policy, ['cors', name], env));
    return out;
  },
  compile({ config, shared, routePath }, env) {
    const path = [...routePath, 'cors'];
    const policy = resolveRef(config, shared, (c, p) => compileCorsPolicy(c, p, env), path, env, 'CORS');
    if (policy === null) return null;
    // A method-limited route need not list OPTIONS: the gateway routes a preflight to the route that serves
    // the method it asks for (answersPreflight below), so a read route and a write route on one path each
    // answer their own preflights.
    const { origins, wildcard, credentials } = policy;
    const preflightOk = (origin: string): HeaderMap => {
      const h: HeaderMap = {
        'access-control-allow-origin': wildcard ? '*' : origin,
        'access-control-allow-methods': policy.allowMethods,
        'access-control-max-age': policy.maxAge,
      };
      if (credentials) h['access-control-allow-credentials'] = 'true';
      if (policy.allowHeaders !== '') h['access-control-allow-headers'] = policy.allowHeaders;
      return h;
    };
    const preflightVary: HeaderMap = { vary: PREFLIGHT_VARY };
    const refusal = (reason: string, detail: string): Deny => deny(403, reason, detail, preflightVary);
    const describe = () => ({
      origins: origins.entries,
      methods: [...policy.methods],
      allow_headers: policy.config.allow_headers,
      expose_headers: policy.config.expose_headers,
      credentials,
      max_age_seconds: Number(policy.maxAge),
      mode: policy.config.mode,
    });
    if (policy.config.mode === 'report') {
      return {
        name: 'cors',
        // Preflights are still routed here by the method they ask for, so they are judged (and then forwarded).
        answersPreflight: true,
        onRequest(ctx) {
          const origin = ctx.requestHeaders.origin;
          if (origin === undefined) return undefined;
          const allowed = origins.has(origin);
          const requestMethod = ctx.method === 'OPTIONS' ? ctx.requestHeaders['access-control-request-method'] : undefined;
          let reason: string | null = null;
          if (requestMethod !== undefined) {
            const requested = ctx.requestHeaders['access-control-request-headers'];
            if (!allowed) reason = 'origin_not_allowed';
            else if (!policy.methods.has(requestMethod)) reason = 'cors_method_not_allowed';
            else if (requested !== undefined && !headersAllowed(requested, policy.headers)) reason = 'cors_headers_not_allowed';
          } else if (!allowed && ctx.requestHeaders.upgrade !== undefined) reason = 'origin_not_allowed';
          if (reason !== null) reportDeny(ctx, 'cors', reason);
          return undefined;
        },
        onResponse: null,
        describe,
      };
    }
    return {
      name: 'cors',
      answersPreflight: true,
      onRequest(ctx) {
        const origin = ctx.requestHeaders.origin;
        if (origin === undefined) return undefined; // not a CORS request
        const allowed = origins.has(origin);
        const requestMethod = ctx.method === 'OPTIONS' ? ctx.requestHeaders['access-control-request-method'] : undefined;
        if (requestMethod !== undefined) {
          // A preflight: answered here, never forwarded.
          if (!allowed) return refusal('origin_not_allowed', 'this origin may not call this route');
          if (!policy.methods.has(requestMethod)) return refusal('cors_method_not_allowed', `method not allowed; allowed: ${policy.allowMethods}`);
          const requested = ctx.requestHeaders['access-control-request-headers'];
          if (requested !== undefined && !headersAllowed(requested, policy.headers)) {
            return refusal('cors_headers_not_allowed', `header not allowed; allowed: ${policy.allowHeaders}`);
          }
          const h = preflightOk(origin);
          for (const name in h) ctx.responseHeaders[name] = h[name];
          return deny(204, 'preflight', undefined, preflightVary);
        }
        if (!allowed) {
          // Browsers do not apply CORS to WebSocket handshakes: a disallowed origin is refused here, or any
          // site could open a socket with the user's cookies (cross-site WebSocket hijacking).
          if (ctx.requestHeaders.upgrade !== undefined) return UPGRADE_REFUSED;
          return undefined; // forwarded, but without any Access-Control-Allow-* header
        }
        const rh = ctx.responseHeaders;
        rh['access-control-allow-origin'] = wildcard ? '*' : origin;
        if (credentials) rh['access-control-allow-credentials'] = 'true';
        if (policy.exposeHeaders !== '') rh['access-control-expose-headers'] = policy.exposeHeaders;
        return undefined;
      },
      onResponse(ctx, head) {
        const h = head.headers;
        // An allowed preflight travels as a 204 "deny" (the runner's only way to answer without forwarding);
        // it is not a refusal, so it is not recorded as one in metrics, access and audit logs.
        if (head.status === 204 && ctx.deny !== null && ctx.deny.reason === 'preflight') ctx.deny = null;
        const own = ctx.responseHeaders;
        // The upstream does not get to widen the policy: its Access-Control-* are replaced by the gateway's.
        for (let i = 0; i < ACA_HEADERS.length; i++) {
          const name = ACA_HEADERS[i]!;
          if (own[name] === undefined && h[name] !== undefined) delete h[name];
        }
        if (!wildcard) h.vary = appendVary(h.vary, 'Origin');
      },
      describe,
    };
  },
});
