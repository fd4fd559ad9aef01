// Whether the request-path hardening lets a routed request in: path parameters, double encoding, another
// spelling of a stricter route, dangerous methods, method overrides. One function for the gateway,
// `portcullis explain` and `portcullis test`, so they can never disagree about what is refused.
import type { CompiledPolicy, CompiledRoute } from '../policy/compile.ts';
import type { RequestContext } from '../contract/context.ts';
import { overrideMethod } from '../proxy/hardening.ts';
import { canonicalPath, ENCODED_PERCENT, PATH_PARAMETER } from '../proxy/normalize.ts';

export interface Refusal {
  readonly status: number;
  readonly reason: string;
  readonly detail: string;
  readonly headers?: Readonly<Record<string, string>>;
}

const PATH_PARAMETER_REFUSED: Refusal = Object.freeze({
  status: 400, reason: 'path_parameter', detail: 'a path segment carries ";" parameters, which upstreams read differently',
});
const ENCODED_PERCENT_REFUSED: Refusal = Object.freeze({
  status: 400, reason: 'encoded_percent', detail: 'the path carries %25 (double encoding)',
});
const AMBIGUOUS_PATH: Refusal = Object.freeze({
  status: 400, reason: 'ambiguous_path', detail: 'the path is another spelling (letter case, trailing slash or parameters) of a route\'s path; send it as the route spells it',
});
const METHOD_OVERRIDE: Refusal = Object.freeze({
  status: 400, reason: 'method_override', detail: 'method overrides are refused on a route that restricts methods',
});
const ANY_METHOD = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

/** Methods that are never forwarded unless a route lists them: TRACE/TRACK echo credentials, CONNECT tunnels. */
export function isDangerousMethod(method: string): boolean {
  return method === 'TRACE' || method === 'TRACK' || method === 'CONNECT';
}

function methodNotAllowed(route: CompiledRoute): Refusal {
  const allow = route.methods === null ? ANY_METHOD : [...route.methods].join(', ');
  return { status: 405, reason: 'method_not_allowed', detail: 'this method is not allowed here', headers: { allow } };
}

const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The method a CORS preflight asks for (OPTIONS with Origin and Access-Control-Request-Method), or null. */
export function preflightMethod(method: string, headers: RequestContext['requestHeaders']): string | null {
  if (method !== 'OPTIONS' || headers.origin === undefined) return null;
  const asked = headers['access-control-request-method'];
  return typeof asked === 'string' && METHOD_TOKEN.test(asked) ? asked : null;
}

/** Where a request goes: its route (and the method it was routed by), a refusal, or null (no route: 404). */
export type Routing = { readonly route: CompiledRoute; readonly method: string } | { readonly route: null; readonly refusal: Refusal } | null;

/**
 * Routing, one function for the gateway, `explain` and `portcullis test`. A CORS preflight goes to the
 * route that would serve the method it asks for, when that route answers preflights (has CORS), so
 * method-split routes on one path each answer their own; otherwise OPTIONS is routed like any method. An
 * OPTIONS no route takes, on a path routes take for other methods, is 405 with their methods in `Allow`:
 * answered here, never forwarded.
 */
export function routeRequest(policy: CompiledPolicy, host: string, method: string, path: string, headers: RequestContext['requestHeaders']): Routing {
  const router = policy.router;
  if (method !== 'OPTIONS') {
    const route = router.match(host, method, path);
    if (route !== null) return { route, method };
    const unknown = unknownHost(policy, host);
    return unknown === null ? null : { route: null, refusal: unknown };
  }
  const asked = preflightMethod(method, headers);
  if (asked !== null) {
    const served = router.match(host, asked, path);
    if (served !== null && served.preflight) return { route: served, method: asked };
  }
  const route = router.match(host, method, path);
  if (route !== null) return { route, method };
  const unknown = unknownHost(policy, host);
  if (unknown !== null) return { route: null, refusal: unknown };
  const allow = router.methodsAt(host, path);
  if (allow === null || allow.length === 0) return null;
  return { route: null, refusal: { status: 405, reason: 'method_not_allowed', detail: 'no route here takes OPTIONS', headers: { allow: allow.join(', ') } } };
}

/**
 * `unknown_host`: the answer for a request no route took whose Host no route serves at all (no host group
 * names it, no route takes any host), or null. Only asked after routing missed.
 */
export function unknownHost(policy: CompiledPolicy, host: string): Refusal | null {
  const u = policy.unknownHost;
  if (u === null || policy.router.servesHost(host)) return null;
  return { status: u.status, reason: u.reason, detail: 'no route serves this host' };
}

/**
 * The refusal the route's hardening rules give this request (`ctx` normalized and routed), or null.
 * `routeMethod` is the method the request was routed by (a preflight's requested method).
 */
export function hardeningRefusal(policy: CompiledPolicy, route: CompiledRoute, ctx: RequestContext, routeMethod: string = ctx.method): Refusal | null {
  const h = route.hardening;
  const flags = ctx.targetFlags;
  if (flags !== 0) {
    if ((flags & PATH_PARAMETER) !== 0 && !h.allowPathParameters) return PATH_PARAMETER_REFUSED;
    if ((flags & ENCODED_PERCENT) !== 0 && !h.allowEncodedPercent) return ENCODED_PERCENT_REFUSED;
  }
  const method = ctx.method;
  if (isDangerousMethod(method) && (route.methods === null || !route.methods.has(method))) return methodNotAllowed(route);
  if (route.methods !== null && (ctx.scrubbed !== null || ctx.query.length > 8)) {
    const override = overrideMethod(ctx.scrubbed, ctx.query);
    if (override !== null) {
      if (!h.allowMethodOverride) return METHOD_OVERRIDE;
      if (!route.methods.has(override)) return methodNotAllowed(route);
    }
  }
  // Path spelling: would the spelling an upstream that ignores case and the trailing slash (and strips
  // parameters) serves take a different route? Skipped when the request is already in canonical spelling
  // and no route path has upper case or a trailing slash (then both tables give the same answer).
  const path = ctx.path;
  const canonical = canonicalPath(path, flags);
  if (canonical !== path || policy.spellingSensitive) {
    const other = policy.canonicalRouter.match(ctx.host, routeMethod, canonical);
    if (other !== null && other !== route && other.hardening.protectSpelling) return AMBIGUOUS_PATH;
  }
  return null;
}

/** Puts back the scrubbed client headers the route forwards anyway (`keep_headers`, `_` names, overrides). */
export function restoreKeptHeaders(route: CompiledRoute, ctx: RequestContext): void {
  const keep = route.hardening.keep;
  const scrubbed = ctx.scrubbed;
  if (keep === null || scrubbed === null) return;
  for (const name in scrubbed) {
    if (!keep(name)) continue;
    ctx.upstreamHeaders[name] = scrubbed[name];
    (ctx.requestHeaders as Record<string, string | string[] | undefined>)[name] = scrubbed[name];
  }
}
