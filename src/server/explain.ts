// What the compiled policy does, as data: every route with its match, upstream and filter chain, or the one
// request a method, URL and headers make: its normalization, route, hardening verdict and what each filter
// of the chain decides. `portcullis explain` (src/cli/explain.ts) prints it; the admin dashboard's
// "explain a request" form answers with it, so the two never disagree. Nothing here calls an upstream:
// a filter whose hook reaches beyond the request (a rate-limit hit, a forward-auth call) says
// `explainable: false` and is reported as not evaluated instead of run.
import { isIP } from 'node:net';
import type { CompiledPolicy, CompiledRoute } from '../policy/compile.ts';
import type { Deny } from '../contract/filter.ts';
import { reportDeny, RequestContext } from '../contract/context.ts';
import { finishUpstreamRequest, upstreamHeadersFrom } from '../proxy/headers.ts';
import type { HeaderMap } from '../contract/context.ts';
import { runChain } from '../filters/chain.ts';
import { normalizeTarget } from '../proxy/normalize.ts';
import { hardeningRefusal, restoreKeptHeaders, routeRequest, type Refusal } from './admission.ts';
import { hostname } from './gateway.ts';

export interface ExplainRequest {
  method: string;
  /** Path with optional query, or an absolute http(s) URL (its host is the Host header). */
  url: string;
  /** Request headers (any case); `host` overrides the URL's. */
  headers?: Readonly<Record<string, string>>;
  /** The client's address as the gateway would see it (ip_rules, rate-limit keys); default 127.0.0.1. */
  clientIp?: string;
}

/** One filter's verdict in `explain`: in chain order, up to the first refusal. */
export interface FilterDecision {
  filter: string;
  /** `reported`: a filter in report mode would have refused (reason given) and let the request go on. */
  decision: 'continue' | 'deny' | 'reported' | 'not_evaluated' | 'not_reached';
  status?: number;
  reason?: string;
  detail?: string;
}

function maskUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password) copy.password = '********';
  return copy.href;
}

/** A route as the compiled policy holds it (the `explain` view). Not masked: the caller masks the output. */
export function describeRoute(route: CompiledRoute): Record<string, unknown> {
  return {
    route: route.name,
    match: route.matchDescription,
    ...(route.respond !== null ? { respond: { status: route.respond.status, reason: route.respond.reason } } : {}),
    upstream: route.upstream ? { name: route.upstream.name, url: maskUrl(route.upstream.targets[0]!.url), ...(route.upstream.targets.length > 1 ? { targets: route.upstream.targets.map((t) => maskUrl(t.url)) } : {}) } : null,
    max_body_size: route.maxBodySize,
    timeout_ms: route.timeoutMs ?? route.upstream?.config.timeout ?? null,
    filters: route.filters.map((f) => ({ filter: f.name, ...f.describe() })),
  };
}

export function describeGlobalFilters(policy: CompiledPolicy): Record<string, unknown>[] {
  return policy.globalFilters.map((f) => ({ filter: f.name, ...f.describe() }));
}

/** Every route of the policy (`portcullis explain FILE`). */
export function explainPolicy(policy: CompiledPolicy): Record<string, unknown> {
  return { policy: policy.file, mode: policy.mode, hash: policy.hash, global_filters: describeGlobalFilters(policy), routes: policy.routes.map(describeRoute) };
}

/**
 * The request the upstream gets, as the gateway builds it (finishUpstreamRequest): target, Host, and the
 * headers added or changed (with their values) and removed, against what the client sent. Transport
 * headers undici writes itself (`connection: keep-alive`, a body's framing) are not in it.
 */
export function describeUpstreamRequest(method: string, target: string, sent: Readonly<HeaderMap>, upstream: Readonly<HeaderMap>, requestId: string): Record<string, unknown> {
  const added: Record<string, string | string[]> = {};
  const removed: string[] = [];
  for (const name in upstream) {
    const v = upstream[name];
    if (v === undefined || JSON.stringify(v) === JSON.stringify(sent[name])) continue;
    // A request id the gateway generated is new on every request: say so rather than show one of them.
    added[name] = v === requestId && sent[name] === undefined ? '(generated per request)' : v;
  }
  for (const name in sent) if (upstream[name] === undefined) removed.push(name);
  return { method, target, host: upstream.host, headers_added: added, headers_removed: removed.sort() };
}

/** Runs the route's filters one by one on `ctx`, recording each verdict; stops at the first refusal. */
async function decide(route: CompiledRoute, ctx: RequestContext): Promise<{ decisions: FilterDecision[]; deny: (Deny & { filter: string }) | null }> {
  const decisions: FilterDecision[] = [];
  let deny: (Deny & { filter: string }) | null = null;
  for (const f of route.filters) {
    if (f.onRequest === null) continue;
    if (deny !== null) {
      decisions.push({ filter: f.name, decision: 'not_reached' });
      continue;
    }
    if (f.explainable === false) {
      decisions.push({ filter: f.name, decision: 'not_evaluated', detail: 'decides with effects beyond the request (counts, calls a service): assumed to let it through' });
      continue;
    }
    const before = ctx.reported?.length ?? 0;
    const v = await f.onRequest(ctx);
    const reported = ctx.reported !== null && ctx.reported.length > before ? ctx.reported[before]! : null;
    if (v === undefined && reported !== null) decisions.push({ filter: f.name, decision: 'reported', reason: reported.reason });
    else if (v === undefined) decisions.push({ filter: f.name, decision: 'continue' });
    else {
      decisions.push({ filter: f.name, decision: 'deny', status: v.status, reason: v.reason, ...(v.detail !== undefined ? { detail: v.detail } : {}) });
      deny = { ...v, filter: f.name };
    }
  }
  return { decisions, deny };
}

/**
 * One request through the compiled policy (`portcullis explain FILE METHOD URL [-H ...]`): what the gateway
 * would answer, or the upstream it would forward to, with each filter's decision. Not masked.
 */
export async function explainRequest(policy: CompiledPolicy, req: ExplainRequest): Promise<Record<string, unknown>> {
  const method = req.method.toUpperCase();
  const url = req.url;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  const absolute = /^https?:\/\//i.test(url);
  const parsed = absolute ? new URL(url) : new URL(url, 'http://localhost');
  const authority = headers.host ?? parsed.host;
  headers.host = authority;
  const rawTarget = url.replace(/^https?:\/\/[^/?#]*/i, '') || '/';
  const request = `${method} ${url}`;
  if (req.clientIp !== undefined && isIP(req.clientIp) === 0) throw new TypeError(`client IP "${req.clientIp}" is not an IPv4 or IPv6 address`);
  const target = normalizeTarget(rawTarget);
  if (typeof target === 'string') return { request, answer: { status: 400, reason: target, filter: 'gateway' } };
  const host = hostname(authority);
  const global = describeGlobalFilters(policy);
  const normalized = { host, path: target.path, query: target.query };
  if (method === 'CONNECT') return { request, normalized, global_filters: global, answer: { status: 405, reason: 'method_not_allowed', filter: 'gateway' } };
  const routed = routeRequest(policy, host, method, target.path, headers);
  if (routed === null) return { request, normalized, global_filters: global, answer: { status: 404, reason: 'route_not_found', filter: 'gateway' } };
  if (routed.route === null) return { request, normalized, global_filters: global, answer: { status: routed.refusal.status, reason: routed.refusal.reason, filter: 'gateway', headers: routed.refusal.headers } };
  const route = routed.route;

  const sent: HeaderMap = { ...headers }; // the client's headers, before the scrubber removes any
  const ctx = new RequestContext(method, '1.1', headers, req.clientIp ?? '127.0.0.1', parsed.protocol === 'https:' ? 'https' : 'http', performance.now());
  ctx.upstreamHeaders = upstreamHeadersFrom(headers, false, policy.scrub, ctx);
  // The global filters run first in the gateway too (the request id it forwards).
  if (policy.globalRequest !== null) {
    const d = await runChain(policy.globalRequest, policy.globalNames, ctx);
    if (d !== undefined) return { request, normalized, global_filters: global, answer: { status: d.status, reason: d.reason, filter: ctx.deny?.filter ?? 'gateway' } };
  }
  ctx.path = target.path;
  ctx.query = target.query;
  ctx.host = host;
  ctx.authority = authority;
  ctx.targetFlags = target.flags;
  ctx.route = route;
  const out: Record<string, unknown> = { request, normalized, global_filters: global, ...describeRoute(route) };
  if (routed.method !== method) out.routed_as = routed.method; // a preflight, routed by the method it asks for
  const refused: Refusal | null = hardeningRefusal(policy, route, ctx, routed.method);
  if (refused !== null && !route.hardening.report) {
    out.decisions = route.filters.filter((f) => f.onRequest !== null).map((f): FilterDecision => ({ filter: f.name, decision: 'not_reached' }));
    out.answer = { status: refused.status, reason: refused.reason, filter: 'gateway' };
    return out;
  }
  if (refused === null) restoreKeptHeaders(route, ctx);
  else reportDeny(ctx, 'gateway', refused.reason);
  const cl = headers['content-length'];
  if (cl !== undefined && Number(cl) > route.maxBodySize) {
    out.answer = { status: 413, reason: 'body_too_large', filter: 'gateway' };
    return out;
  }
  const { decisions, deny } = await decide(route, ctx);
  out.decisions = decisions;
  if (deny !== null) out.answer = { status: deny.status, reason: deny.reason, filter: deny.filter };
  else if (route.respond !== null) out.answer = { status: route.respond.status, reason: route.respond.reason, filter: 'respond', ...(route.respond.body !== null ? { body: route.respond.body.toString('utf8'), content_type: route.respond.contentType } : {}) };
  else if (route.upstream === null) out.answer = { status: 404, reason: 'route_not_found', filter: 'gateway' };
  else {
    out.answer = { forward: route.upstream.name };
    out.upstream_request = describeUpstreamRequest(method, finishUpstreamRequest(ctx, route.upstream.http2), sent, ctx.upstreamHeaders, ctx.id);
  }
  if (refused !== null) out.hardening = { status: refused.status, reason: refused.reason, mode: 'report: logged, not refused' };
  if (ctx.reported !== null) out.reported = ctx.reported;
  return out;
}
