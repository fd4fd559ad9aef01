// The forwarding engine: undici's `Pool.dispatch` with a handler that streams the upstream's answer into
// the client's response with backpressure. Chosen by measurement (docs/architecture.md, bench/): it is
// about twice as fast as http-proxy, because nothing is buffered, no events are re-emitted per request,
// and the connection pool is undici's.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Dispatcher } from 'undici';
import { chunkGuardOf, type ChunkedBodyGuard } from './chunked.ts';
import type { RequestContext, ResponseHead } from '../contract/context.ts';
import { responseHeadersFrom, upstreamTarget } from './headers.ts';
import type { QueuedDispatch, Target } from './balancer.ts';
import type { Upstream } from './upstream.ts';

export type ClientRequest = IncomingMessage | Http2ServerRequest;
export type ClientResponse = ServerResponse | Http2ServerResponse;

/** What the forwarder needs from the server: the one answer function and the response phase. */
export interface ForwardSink {
  /** The gateway's own answer (problem+json), used when the upstream fails before its head arrived. */
  fail(ctx: RequestContext, res: ClientResponse, status: number, reason: string): void;
  /** Runs the route's response filters and merges the request phase's response headers. */
  respond(ctx: RequestContext, head: ResponseHead): void;
  upstreamError(upstream: Upstream, reason: string): void;
  upstreamAnswered(upstream: Upstream, seconds: number): void;
}

/** Stable reasons for upstream failures: 502 when it refused or broke, 504 when it was too slow. */
export function classifyUpstreamError(err: Error & { code?: string }): { status: number; reason: string } {
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { status: 504, reason: 'upstream_connect_timeout' };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { status: 504, reason: 'upstream_timeout' };
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
      return { status: 502, reason: 'upstream_unreachable' };
    case 'REQUEST_BODY_TOO_LARGE':
      return { status: 413, reason: 'body_too_large' };
    case 'REQUEST_BODY_REJECTED': {
      const rejected = err as Error & { status: number; reason: string };
      return { status: rejected.status, reason: rejected.reason };
    }
    case 'CLIENT_ABORTED':
      return { status: 499, reason: 'client_closed_request' };
    default:
      return { status: 502, reason: 'upstream_failed' };
  }
}

class BodyTooLargeError extends Error {
  readonly code = 'REQUEST_BODY_TOO_LARGE';
}

/** Streams a request body, failing as soon as it exceeds `limit` (chunked bodies included). */
async function* limitedBody(body: ClientRequest, limit: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw new BodyTooLargeError('request body above limit');
    yield chunk;
  }
}

/**
 * A chunked HTTP/1.1 body read with its guard: a chunk-size line the guard refuses ends the stream at
 * once (the bytes of that chunk are never yielded), even while waiting for data that may never come.
 */
async function* guardedBody(body: ClientRequest, limit: number, guard: ChunkedBodyGuard): AsyncGenerator<Buffer> {
  if (guard.problem !== null) throw guard.problem;
  const refused = new Promise<never>((_resolve, reject) => guard.onProblem(reject));
  refused.catch(() => undefined);
  const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let total = 0;
  for (;;) {
    const next = await Promise.race([chunks.next(), refused]);
    if (guard.problem !== null) throw guard.problem;
    if (next.done) return;
    total += next.value.length;
    if (total > limit) throw new BodyTooLargeError('request body above limit');
    yield next.value;
  }
}

/** The request body as the upstream gets it: size-limited (and chunk-guarded), or null when there is none. */
export function requestBodyOf(req: ClientRequest, maxBodySize: number): AsyncIterable<Buffer> | null {
  if (!hasBody(req)) return null;
  const guard = chunkGuardOf(req);
  return guard === undefined ? limitedBody(req, maxBodySize) : guardedBody(req, maxBodySize, guard);
}

function hasBody(req: ClientRequest): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  if (cl !== undefined) return cl !== '0';
  // HTTP/2 requests may stream a body without announcing its length.
  return req.httpVersionMajor === 2 && !(req as Http2ServerRequest).stream?.endAfterHeaders;
}

class ForwardHandler implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null;
  readonly ctx: RequestContext;
  readonly res: ClientResponse;
  readonly sink: ForwardSink;
  readonly upstream: Upstream;
  readonly started: number;
  readonly options: Dispatcher.DispatchOptions & { servername?: string };
  readonly hasBody: boolean;
  readonly req: ClientRequest;
  readonly sendTimeoutMs: number;
  clientGone = false;
  /** The upstream's answer ended (or failed): a later 'close' of the client is not an abort. */
  done = false;
  /** Set while the request waits for a slot of its target (see Target.dispatch). */
  queued: QueuedDispatch | null = null;
  /** The target of the current attempt; `live` until its outcome was given back to the upstream. */
  target: Target;
  live = false;
  answered = false;
  /** Retries so far, and the bit set of targets tried (a retry goes elsewhere). */
  attempt = 0;
  tried = 0;

  constructor(ctx: RequestContext, res: ClientResponse, sink: ForwardSink, upstream: Upstream, target: Target, options: Dispatcher.DispatchOptions & { servername?: string }, hasBody: boolean, sendTimeoutMs: number, req: ClientRequest) {
    this.ctx = ctx;
    this.req = req;
    this.sendTimeoutMs = sendTimeoutMs;
    this.res = res;
    this.sink = sink;
    this.upstream = upstream;
    this.started = performance.now();
    this.target = target;
    this.options = options;
    this.hasBody = hasBody;
  }

  dispatch(target: Target): void {
    this.target = target;
    this.tried |= 1 << target.index;
    this.live = true;
    if (target.servername !== this.options.servername) this.options.servername = target.servername;
    this.queued = target.dispatch(this.options, this);
  }

  release(): void {
    if (!this.live) return;
    this.live = false;
    this.upstream.released(this.target);
    if (this.attempt > 0) this.upstream.retryEnded();
  }

  /** The client went away: a queued request leaves the queue, a sent one is aborted (its slot freed). */
  clientClosed(): void {
    this.clientGone = true;
    if (this.queued !== null) {
      this.target.withdraw(this.queued);
      this.queued = null;
      this.live = false;
      if (this.attempt > 0) this.upstream.retryEnded();
      this.ctx.status = 499;
      return;
    }
    this.controller?.abort(clientAborted('client closed the request'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.queued = null;
    if (this.clientGone) controller.abort(clientAborted('client closed the request'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx informational: the gateway handles 100-continue itself
    this.answered = true;
    this.upstream.answered(this.target, statusCode);
    const elapsed = performance.now() - this.started;
    this.ctx.upstreamStatus = statusCode;
    this.ctx.upstreamDurationMs = elapsed;
    this.sink.upstreamAnswered(this.upstream, elapsed / 1000);
    const head: ResponseHead = { status: statusCode, headers: responseHeadersFrom(headers) };
    this.sink.respond(this.ctx, head);
    const res = this.res;
    this.ctx.status = head.status;
    try {
      (res as ServerResponse).writeHead(head.status, head.headers as Record<string, string | string[]>);
    } catch {
      // An upstream header Node refuses to send (invalid characters): answer 502 rather than pass it on.
      controller.abort(new Error('invalid upstream response header'));
      this.sink.upstreamError(this.upstream, 'invalid_response');
      if (!res.headersSent) this.sink.fail(this.ctx, res, 502, 'upstream_invalid_response');
      return;
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.res;
    if (!(res as ServerResponse).write(chunk)) {
      // A response that can no longer be written (its stream reset) must not hold the upstream
      // connection paused waiting for a 'drain' that never comes.
      if (clientGoneFrom(this.req, res)) return controller.abort(clientAborted('client closed the request'));
      controller.pause();
      // A client that stops reading (an HTTP/2 zero window, a stalled socket) would hold this upstream
      // connection for as long as it likes: past send_timeout the response is given up. The timer exists
      // only while the response is paused.
      const stalled = setTimeout(() => {
        res.off('drain', resume);
        this.ctx.status = 499;
        controller.abort(clientAborted('client did not read the response'));
        (res as ServerResponse).destroy();
      }, this.sendTimeoutMs);
      const resume = () => {
        clearTimeout(stalled);
        controller.resume();
      };
      res.once('drain', resume);
    }
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.done = true;
    this.release();
    const res = this.res;
    let sent = false;
    for (const _name in trailers) {
      res.addTrailers(trailers as Record<string, string>);
      sent = true;
      break;
    }
    if (!sent && this.upstream.http2) {
      // undici 7 hands HTTP/2 trailers over as an object that its own parser then drops (it expects the
      // raw [name, value] list of HTTP/1.1): take them from the controller, or grpc-status would be lost.
      const raw = (controller as { rawTrailers?: unknown }).rawTrailers;
      if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) res.addTrailers(raw as Record<string, string>);
    }
    res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error & { code?: string }): void {
    this.release();
    const res = this.res;
    if (this.clientGone || error.code === 'CLIENT_ABORTED') {
      this.ctx.status = 499;
      return;
    }
    const { status, reason } = classifyUpstreamError(error);
    if (!this.answered) {
      const upstream = this.upstream;
      upstream.failed(this.target, status === 502 || status === 504, reason);
      // Nothing reached the client and nothing of a body was sent: another target may answer instead.
      if (!res.headersSent && upstream.mayRetry(this.attempt, this.ctx.method, this.hasBody, error.code)) {
        const next = upstream.pick(this.tried);
        upstream.retryStarted(next !== null);
        if (next !== null) {
          this.sink.upstreamError(upstream, reason);
          this.attempt++;
          this.controller = null;
          this.dispatch(next);
          return;
        }
      }
    }
    if (reason !== 'body_too_large' && error.code !== 'REQUEST_BODY_REJECTED') this.sink.upstreamError(this.upstream, reason);
    if (!res.headersSent) {
      this.sink.fail(this.ctx, res, status, reason);
    } else {
      // Mid-body failure: the client must see a broken response, never a truncated "complete" one.
      res.destroy();
    }
  }
}

/** The abort reason of a request whose client went away (classified 499, never counted against the upstream). */
function clientAborted(message: string): Error {
  return Object.assign(new Error(message), { code: 'CLIENT_ABORTED' });
}

/**
 * The client's connection (HTTP/1) or stream (HTTP/2) is closed: nothing can be written to it any more.
 * For HTTP/1 the request's socket is asked, not the response's: a pipelined response has no socket
 * until the answers before it are sent.
 */
function clientGoneFrom(req: ClientRequest, res: ClientResponse): boolean {
  const stream = (res as Http2ServerResponse).stream as Http2ServerResponse['stream'] | undefined;
  if (stream !== undefined) return stream.destroyed || stream.closed;
  return req.socket.destroyed;
}

/** The route's limits the forwarder applies (a compiled route is one). */
export interface ForwardLimits {
  /** Upstream headers and body timeout, or null for undici's defaults. */
  readonly timeoutMs: number | null;
  readonly maxBodySize: number;
  readonly sendTimeoutMs: number;
}

export function forward(
  ctx: RequestContext,
  route: ForwardLimits,
  upstream: Upstream,
  req: ClientRequest,
  res: ClientResponse,
  sink: ForwardSink,
): void {
  // The client may be gone already (an HTTP/2 stream reset while async filters ran): pick no target,
  // send nothing.
  if (clientGoneFrom(req, res)) {
    ctx.status = 499;
    return;
  }
  const target = upstream.pick(0);
  if (target === null) {
    sink.upstreamError(upstream, 'no_healthy_upstream');
    sink.fail(ctx, res, 503, 'no_healthy_upstream');
    return;
  }
  // A body whose first bytes a filter read (ctx.body) is sent from that reader: those bytes, then the rest.
  const bodyPresent = ctx.body !== null || hasBody(req);
  let body: AsyncIterable<Buffer> | null = ctx.body !== null ? ctx.body.stream() : requestBodyOf(req, route.maxBodySize);
  if (body !== null && ctx.bodyFilter !== null) body = ctx.bodyFilter(ctx, body);
  const options: Dispatcher.DispatchOptions = {
    path: upstreamTarget(ctx),
    method: ctx.method as Dispatcher.HttpMethod,
    headers: ctx.upstreamHeaders as Record<string, string | string[]>,
    // undici streams async iterables (with backpressure) though its types list only Readable.
    body: body as unknown as Dispatcher.DispatchOptions['body'],
  };
  if (route.timeoutMs !== null) {
    options.headersTimeout = route.timeoutMs;
    options.bodyTimeout = route.timeoutMs;
  }
  const handler = new ForwardHandler(ctx, res, sink, upstream, target, options, bodyPresent, route.sendTimeoutMs, req);
  // Not `res.writableFinished`: an HTTP/2 response reports finished once its stream is reset.
  res.once('close', () => {
    if (!handler.done) handler.clientClosed();
  });
  handler.dispatch(target);
}
