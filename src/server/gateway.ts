// The request path: one active compiled policy, read once per request; target normalization; routing;
// the route's filter chain; forwarding; the gateway's own answers; end-of-request telemetry. A reload
// swaps `active` and retires the old policy once its in-flight requests are done.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { CompiledPolicy, CompiledRoute } from '../policy/compile.ts';
import { runChain } from '../filters/chain.ts';
import type { Deny } from '../contract/filter.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { RequestObserver } from '../contract/observer.ts';
import type { Telemetry } from '../contract/telemetry.ts';
import { writeDirect, writeProblem } from '../proxy/answer.ts';
import { chunkGuardOf } from '../proxy/chunked.ts';
import { canonicalAddress } from '../config/cidr.ts';
import { reportDeny, RequestContext, type ResponseHead } from '../contract/context.ts';
import { forward, requestBodyOf, type ClientRequest, type ClientResponse, type ForwardSink } from '../proxy/forwarder.ts';
import { finishUpstreamRequest, identifyClient, upstreamHeadersFrom, type ClientIdentity } from '../proxy/headers.ts';
import { clientCertOf } from '../proxy/client-cert.ts';
import { normalizeTarget } from '../proxy/normalize.ts';
import { RequestBody } from '../proxy/request-body.ts';
import type { Upstream } from '../proxy/upstream.ts';
import { proxyUpgrade, websocketHandshakeProblem } from '../proxy/websocket.ts';
import { hardeningRefusal, restoreKeptHeaders, routeRequest, unknownHost, type Refusal } from './admission.ts';

const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{1,5})?$/;

interface PolicyUse {
  inflight: number;
  retired: boolean;
}

export class Gateway implements ForwardSink {
  #active: CompiledPolicy;
  readonly #uses = new Map<CompiledPolicy, PolicyUse>();
  readonly telemetry: Telemetry<Metrics>;
  readonly metrics: Metrics;
  readonly observers: RequestObserver[] = [];
  draining = false;
  #inflight = 0;
  #started = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(policy: CompiledPolicy, telemetry: Telemetry<Metrics>) {
    this.#active = policy;
    this.#uses.set(policy, { inflight: 0, retired: false });
    this.telemetry = telemetry;
    this.metrics = telemetry.metrics;
  }

  get policy(): CompiledPolicy {
    return this.#active;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Requests (and upgrades) begun since start: the idle check's sign of activity. */
  get started(): number {
    return this.#started;
  }

  /** Makes `next` the policy of every new request; `previous` closes when its last request ends. */
  swap(next: CompiledPolicy): void {
    const previous = this.#active;
    if (previous === next) return;
    this.#uses.set(next, { inflight: 0, retired: false });
    this.#active = next;
    const use = this.#uses.get(previous);
    if (use) {
      use.retired = true;
      if (use.inflight === 0) this.#retire(previous);
    }
  }

  #retire(policy: CompiledPolicy): void {
    this.#uses.delete(policy);
    void policy.close();
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const policy of [...this.#uses.keys()]) await policy.close();
    this.#uses.clear();
  }

  /** Entry point for every request of every listener. */
  handle(req: ClientRequest, res: ClientResponse, scheme: 'http' | 'https', expectContinue: boolean): void {
    const policy = this.#active;
    const use = this.#uses.get(policy)!;
    const { ctx, identity } = this.#begin(policy, use, req, scheme);
    res.once('close', () => this.#end(policy, use, ctx));

    if (policy.globalRequest !== null) {
      const v = runChain(policy.globalRequest, policy.globalNames, ctx);
      if (v !== undefined) {
        if (v instanceof Promise) {
          v.then(
            (d) => (d ? this.#deny(ctx, res, d) : this.#route(policy, ctx, req, res, identity.host, expectContinue)),
            (err) => this.#internalError(ctx, res, err),
          );
          return;
        }
        this.#deny(ctx, res, v);
        return;
      }
    }
    this.#route(policy, ctx, req, res, identity.host, expectContinue);
  }

  /** Counts the request in flight and builds its context: client identity, headers to forward. */
  #begin(policy: CompiledPolicy, use: PolicyUse, req: ClientRequest, scheme: 'http' | 'https'): { ctx: RequestContext; identity: ClientIdentity } {
    use.inflight++;
    this.#inflight++;
    this.#started++;
    this.metrics.inflight.inc(); // #end decrements it, for upgrades too
    const peer = canonicalAddress(req.socket?.remoteAddress ?? '');
    const ctx = new RequestContext(req.method ?? 'GET', req.httpVersion, req.headers, peer, scheme, performance.now());
    const identity = identifyClient(peer, req.headers, policy.trustedProxies);
    ctx.clientIp = identity.clientIp;
    ctx.peerTrusted = identity.trusted;
    if (identity.proto !== null) ctx.scheme = identity.proto;
    ctx.clientCert = clientCertOf(req.socket);
    ctx.upstreamHeaders = upstreamHeadersFrom(req.headers, identity.trusted, policy.scrub, ctx);
    for (const o of this.observers) o.onRequestStart?.(ctx);
    return { ctx, identity };
  }

  /**
   * Normalizes the target and the host into `ctx` (path, query, authority, host): the values routed and
   * forwarded, for requests and upgrades alike. Returns the reason of a 400, or null.
   */
  #target(ctx: RequestContext, req: ClientRequest, forwardedHost: string | null): string | null {
    const target = normalizeTarget(req.url ?? '/');
    if (typeof target === 'string') return target;
    const h = req.headers;
    const hostField = h.host as string | string[] | undefined;
    if (Array.isArray(hostField)) return 'duplicate_host';
    const pseudo = h[':authority'] as string | undefined;
    // RFC 9113 8.3.1: Host beside :authority must say the same; otherwise the two ends may route differently.
    if (pseudo !== undefined && hostField !== undefined && hostField.toLowerCase() !== pseudo.toLowerCase()) return 'host_mismatch';
    const authority = pseudo ?? hostField;
    if (authority === undefined || !HOST.test(authority)) return 'invalid_host';
    const host = hostname(authority);
    if (target.authority !== null && hostname(target.authority) !== host) return 'host_mismatch';
    ctx.path = target.path;
    ctx.query = target.query;
    ctx.targetFlags = target.flags;
    ctx.authority = authority;
    ctx.host = forwardedHost !== null ? hostname(forwardedHost) : host;
    return null;
  }

  #route(policy: CompiledPolicy, ctx: RequestContext, req: ClientRequest, res: ClientResponse, forwardedHost: string | null, expectContinue: boolean): void {
    if (req.httpVersionMajor === 1) {
      const smuggling = headProblem(req as IncomingMessage);
      if (smuggling !== null) {
        // Where the body ends (or which host is meant) is unknown: nothing more can be read safely from
        // this connection.
        (res as ServerResponse).shouldKeepAlive = false;
        return this.#refuse(ctx, res, 400, smuggling);
      }
    }
    if (ctx.method === 'CONNECT') return this.#refuse(ctx, res, 405, 'method_not_allowed', 'CONNECT is not proxied');
    const chunks = chunkGuardOf(req);
    if (chunks?.problem) return this.#refuse(ctx, res, chunks.problem.status, chunks.problem.reason);
    const bad = this.#target(ctx, req, forwardedHost);
    if (bad !== null) return this.#refuse(ctx, res, 400, bad);

    let route: CompiledRoute | null;
    let routeMethod = ctx.method;
    if (routeMethod !== 'OPTIONS') route = policy.router.match(ctx.host, routeMethod, ctx.path);
    else {
      // OPTIONS: a CORS preflight is routed by the method it asks for; a plain OPTIONS no route takes is 405.
      const routed = routeRequest(policy, ctx.host, routeMethod, ctx.path, ctx.requestHeaders);
      if (routed !== null && routed.route === null) return this.#refusal(ctx, res, routed.refusal);
      route = routed === null ? null : routed.route;
      if (routed !== null) routeMethod = routed.method;
    }
    if (route === null) {
      const unknown = routeMethod === 'OPTIONS' ? null : unknownHost(policy, ctx.host); // OPTIONS: routeRequest asked
      return unknown !== null ? this.#refusal(ctx, res, unknown) : this.#refuse(ctx, res, 404, 'route_not_found');
    }
    ctx.route = route;
    const refused = this.#admit(policy, route, ctx, routeMethod);
    if (refused !== null) return this.#refusal(ctx, res, refused);
    if (chunks !== undefined) {
      chunks.setLimit(route.maxBodySize);
      if (chunks.problem) return this.#refuse(ctx, res, chunks.problem.status, chunks.problem.reason);
    }
    const cl = req.headers['content-length'];
    if (cl !== undefined && Number(cl) > route.maxBodySize) return this.#refuse(ctx, res, 413, 'body_too_large');
    if (route.readsBody) {
      const source = requestBodyOf(req, route.maxBodySize);
      // A filter reads the body before the chain ends: the client awaiting 100 Continue gets it then.
      if (source !== null) ctx.body = new RequestBody(source, expectContinue ? () => (res as ServerResponse).writeContinue() : noop);
    }

    if (route.request !== null) {
      let v: Deny | undefined | Promise<Deny | undefined>;
      try {
        v = runChain(route.request, route.requestNames, ctx);
      } catch (err) {
        return this.#internalError(ctx, res, err);
      }
      if (v !== undefined) {
        if (v instanceof Promise) {
          v.then(
            (d) => (d ? this.#deny(ctx, res, d) : this.#forward(ctx, route, req, res, expectContinue)),
            (err) => this.#internalError(ctx, res, err),
          );
          return;
        }
        return this.#deny(ctx, res, v);
      }
    }
    this.#forward(ctx, route, req, res, expectContinue);
  }

  #forward(ctx: RequestContext, route: CompiledRoute, req: ClientRequest, res: ClientResponse, expectContinue: boolean): void {
    if (res.destroyed) return;
    if (route.respond !== null) return writeDirect(ctx, res, route.respond, this.#finishHead);
    const upstream = route.upstream;
    if (upstream === null) return this.#refuse(ctx, res, 404, 'route_not_found');
    // Expect is answered here: 100 Continue goes out only once the filters let the request in.
    finishUpstreamRequest(ctx, upstream.http2);
    if (expectContinue && (ctx.body === null || !ctx.body.started)) (res as ServerResponse).writeContinue();
    for (const o of this.observers) o.onForward?.(ctx, upstream);
    forward(ctx, route, upstream, req, res, this);
  }

  /**
   * WebSocket handshakes (the listeners send only `Upgrade: websocket` here): the same checks, routing and
   * filters as any request, then proxyUpgrade, which pipes bytes only after the upstream's valid 101.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, scheme: 'http' | 'https', makeResponse: () => ServerResponse): void {
    const res = makeResponse();
    const policy = this.#active;
    const use = this.#uses.get(policy)!;
    const { ctx, identity } = this.#begin(policy, use, req, scheme);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.#end(policy, use, ctx);
    };
    socket.once('close', end);
    // Every refusal ends the connection once written: the bytes after the handshake are never parsed.
    res.once('finish', () => socket.end());
    const proceed = async () => {
      if (policy.globalRequest !== null) {
        const d = await runChain(policy.globalRequest, policy.globalNames, ctx);
        if (d) return this.#deny(ctx, res, d);
      }
      const framing = headProblem(req);
      if (framing !== null) return this.#refuse(ctx, res, 400, framing);
      const bad = this.#target(ctx, req, identity.host);
      if (bad !== null) return this.#refuse(ctx, res, 400, bad);
      const route = policy.router.match(ctx.host, ctx.method, ctx.path);
      if (route === null) {
        const unknown = unknownHost(policy, ctx.host);
        return unknown !== null ? this.#refusal(ctx, res, unknown) : this.#refuse(ctx, res, 404, 'route_not_found');
      }
      ctx.route = route;
      if (route.respond === null && (!route.websocket || route.upstream === null)) return this.#refuse(ctx, res, 404, 'upgrade_not_allowed');
      const handshake = websocketHandshakeProblem(req);
      if (handshake !== null) return this.#refuse(ctx, res, 400, handshake, 'not a valid RFC 6455 WebSocket opening handshake');
      const refused = this.#admit(policy, route, ctx);
      if (refused !== null) return this.#refusal(ctx, res, refused);
      if (route.request !== null) {
        const d = await runChain(route.request, route.requestNames, ctx);
        if (d) return this.#deny(ctx, res, d);
      }
      if (route.respond !== null) return writeDirect(ctx, res, route.respond, this.#finishHead);
      if (route.upstream === null) return this.#refuse(ctx, res, 404, 'upgrade_not_allowed');
      finishUpstreamRequest(ctx, false);
      for (const o of this.observers) o.onForward?.(ctx, route.upstream);
      proxyUpgrade(ctx, route.upstream, socket, head, res, this);
    };
    proceed().catch((err: unknown) => this.#internalError(ctx, res, err));
  }

  /** The route's hardening verdict; in report mode a refusal is logged and the request goes on. */
  #admit(policy: CompiledPolicy, route: CompiledRoute, ctx: RequestContext, routeMethod: string = ctx.method): Refusal | null {
    const refused = hardeningRefusal(policy, route, ctx, routeMethod);
    if (refused !== null && route.hardening.report) {
      reportDeny(ctx, 'gateway', refused.reason);
      this.telemetry.log.warn({ request_id: ctx.id, reason: refused.reason, route: route.name, method: ctx.method, path: ctx.path }, 'hardening (report mode): would refuse');
      return null;
    }
    if (refused === null) restoreKeptHeaders(route, ctx);
    return refused;
  }

  #refusal(ctx: RequestContext, res: ClientResponse, r: Refusal): void {
    ctx.deny = { filter: 'gateway', reason: r.reason };
    writeProblem(ctx, res, r.status, r.reason, r.detail, r.headers, this.#finishHead);
  }

  #refuse(ctx: RequestContext, res: ClientResponse, status: number, reason: string, detail?: string): void {
    ctx.deny = { filter: 'gateway', reason };
    if (detail === undefined) this.fail(ctx, res, status, reason);
    else writeProblem(ctx, res, status, reason, detail, undefined, this.#finishHead);
  }

  #deny(ctx: RequestContext, res: ClientResponse, d: Deny): void {
    writeProblem(ctx, res, d.status, d.reason, d.detail, d.headers, this.#finishHead);
  }

  #internalError(ctx: RequestContext, res: ClientResponse, err: unknown): void {
    this.telemetry.log.error({ request_id: ctx.id, err: err instanceof Error ? err.message : String(err) }, 'filter failed');
    ctx.deny = { filter: ctx.deny?.filter ?? 'gateway', reason: 'internal_error' };
    writeProblem(ctx, res, 500, 'internal_error', undefined, undefined, this.#finishHead);
  }

  // ForwardSink
  fail(ctx: RequestContext, res: ClientResponse, status: number, reason: string): void {
    if (ctx.deny === null) ctx.deny = { filter: 'upstream', reason };
    writeProblem(ctx, res, status, reason, undefined, undefined, this.#finishHead);
  }

  respond(ctx: RequestContext, head: ResponseHead): void {
    this.#finishHead(ctx, head);
  }

  readonly #finishHead = (ctx: RequestContext, head: ResponseHead): void => {
    const headers = head.headers;
    // Draining: tell HTTP/1.1 clients to go elsewhere after this response (HTTP/2 gets GOAWAY instead).
    if (this.draining && ctx.httpVersion.charCodeAt(0) === 0x31 /* '1' */) headers.connection = 'close';
    const extra = ctx.responseHeaders;
    for (const name in extra) {
      const v = extra[name];
      const had = headers[name];
      // Cookies a filter sets (a refreshed session) go out beside the upstream's, never instead of them.
      if (name === 'set-cookie' && had !== undefined && v !== undefined) headers[name] = [...(Array.isArray(had) ? had : [had]), ...(Array.isArray(v) ? v : [v])];
      else headers[name] = v;
    }
    const route = ctx.route;
    if (route !== null && route.response !== null) for (const hook of route.response) hook(ctx, head);
  };

  upstreamError(upstream: Upstream, reason: string): void {
    this.metrics.upstreamErrors.inc({ upstream: upstream.name, reason });
  }

  upstreamAnswered(upstream: Upstream, seconds: number): void {
    this.metrics.upstream(upstream.name).observe(seconds);
  }

  #end(policy: CompiledPolicy, use: PolicyUse, ctx: RequestContext): void {
    this.metrics.inflight.dec();
    for (const o of this.observers) o.onRequestEnd(ctx);
    use.inflight--;
    if (use.retired && use.inflight === 0) this.#retire(policy);
    this.#inflight--;
    if (this.#inflight === 0 && this.#idleWaiters.length) for (const w of this.#idleWaiters.splice(0)) w();
  }
}

function noop(): void {}

/** Host without port, lower-case; `[::1]:8080` → `[::1]`. */
export function hostname(authority: string): string {
  let end = authority.length;
  if (authority.charCodeAt(0) === 0x5b /* [ */) end = authority.indexOf(']') + 1;
  else {
    const colon = authority.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  const host = authority.slice(0, end);
  return host.toLowerCase();
}

/**
 * A request head that front and back servers may read differently. Node's parser refuses most of it
 * already (CL+TE, obs-fold, bad chunk sizes); this catches what it lets through: repeated Content-Length
 * lines, a Transfer-Encoding other than exactly "chunked", and a second Host (Node keeps the first).
 */
function headProblem(req: IncomingMessage): string | null {
  const raw = req.rawHeaders;
  let contentLength = 0;
  let te = 0;
  let host = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4) {
      if (name.toLowerCase() === 'host' && ++host > 1) return 'duplicate_host';
    } else if (name.length === 14 && name.toLowerCase() === 'content-length') contentLength++;
    else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      te++;
      if (raw[i + 1]!.trim().toLowerCase() !== 'chunked') return 'invalid_transfer_encoding';
    }
  }
  if (contentLength > 1) return 'duplicate_content_length';
  if (te > 1) return 'invalid_transfer_encoding';
  if (te > 0 && contentLength > 0) return 'ambiguous_framing';
  return null;
}
