// The one function that writes the gateway's own answers: denies, no-route, bad targets, upstream
// failures. Always application/problem+json with a stable `reason` and the request id; never a stack trace.
import type { RequestContext, ResponseHead } from '../contract/context.ts';
import type { IncomingMessage } from 'node:http';
import type { ClientResponse } from './forwarder.ts';
import { STATUS_CODES } from './node-http.ts';

/** The longest a connection answered before its request body ended keeps reading what the client still sends. */
export const LINGER_MS = 2_000;

/**
 * Makes the server close this HTTP/1.1 connection the way nginx's lingering_close does, once the answer is
 * written: our side ends (FIN after the answer), the client's remaining bytes are read and dropped until it
 * closes its side or LINGER_MS passed, then the socket is destroyed. Destroying at once with the client's
 * body bytes unread makes the kernel answer them with a TCP RST; a client still writing its body then gets
 * EPIPE/ECONNRESET and loses the answer it had not read yet (RFC 9112 9.6). Node's server closes a
 * `Connection: close` socket with `destroySoon()` right after the response finished: that call is
 * replaced on this socket only.
 */
export function lingerOnClose(socket: import('node:net').Socket): void {
  socket.destroySoon = function lingeringClose(this: import('node:net').Socket): void {
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    // The client closed its side (now or before): nothing more to drain once the answer is out.
    if (this.readableEnded) this.once('finish', () => this.destroy());
    else this.once('end', () => this.destroy());
    this.end();
    this.resume();
  };
}

/** A request that announced a body (Content-Length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  return cl !== undefined && cl !== '0';
}

export const PROBLEM_TYPE_BASE = 'https://portcullis.dev/reasons/';

// The security headers of every answer the gateway writes itself, before routing too (400, 404, 408, 413,
// 431, 505): a problem body is never a document, so the strictest set fits. A route's own headers policy
// (its response hooks run after) may change them on that route's answers.
const ANSWER_HEADERS: readonly (readonly [string, string])[] = [
  ['x-content-type-options', 'nosniff'],
  ['content-security-policy', "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"],
  ['cross-origin-opener-policy', 'same-origin'],
  ['cross-origin-embedder-policy', 'require-corp'],
  ['cross-origin-resource-policy', 'same-origin'],
  ['referrer-policy', 'no-referrer'],
  ['x-frame-options', 'DENY'],
];
/** Sent only over TLS (a browser ignores it on plain HTTP); no includeSubDomains: that is the policy's call. */
const ANSWER_HSTS = 'max-age=31536000';

/** Adds the answer security headers to `headers` (HSTS when the client's connection is TLS). */
export function addAnswerHeaders(headers: Record<string, string | string[] | undefined>, https: boolean): void {
  for (let i = 0; i < ANSWER_HEADERS.length; i++) headers[ANSWER_HEADERS[i]![0]] = ANSWER_HEADERS[i]![1];
  if (https) headers['strict-transport-security'] = ANSWER_HSTS;
}

/** The same headers as raw header lines, for answers written straight to a socket. */
export function answerHeaderLines(https: boolean): string {
  let out = '';
  for (const [name, value] of ANSWER_HEADERS) out += `${name}: ${value}\r\n`;
  if (https) out += `strict-transport-security: ${ANSWER_HSTS}\r\n`;
  return out;
}

export function problemBody(status: number, reason: string, requestId: string, detail?: string): string {
  return JSON.stringify({
    type: PROBLEM_TYPE_BASE + reason,
    title: STATUS_CODES[status] ?? 'Error',
    status,
    reason,
    ...(detail ? { detail } : {}),
    request_id: requestId,
  });
}

/** A route's own answer (`respond:`), compiled once. */
export interface DirectAnswer {
  readonly status: number;
  /** The answer's reason code; null for a 2xx answer (not a refusal). */
  readonly reason: string | null;
  readonly detail: string | undefined;
  /** Literal body (sent with `contentType`), or null for a problem+json answer. */
  readonly body: Buffer | null;
  readonly contentType: string;
}

/**
 * Writes a problem answer. `head.headers` may carry filter headers (WWW-Authenticate, Retry-After...);
 * `finish` lets the route's response filters (security headers, CORS) apply to it like to any response.
 */
export function writeProblem(
  ctx: RequestContext,
  res: ClientResponse,
  status: number,
  reason: string,
  detail: string | undefined,
  extraHeaders: Record<string, string | string[] | undefined> | undefined,
  finish: (ctx: RequestContext, head: ResponseHead) => void,
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  // 204: a gateway answer that is not a refusal (an allowed CORS preflight) carries no body.
  const bodyless = status === 204;
  const body = ctx.method === 'HEAD' || bodyless ? '' : problemBody(status, reason, ctx.id, detail);
  const headers: Record<string, string | string[] | undefined> = bodyless
    ? {}
    : {
        'content-type': 'application/problem+json',
        'cache-control': 'no-store',
        'content-length': String(Buffer.byteLength(body || problemBody(status, reason, ctx.id, detail))),
      };
  send(ctx, res, status, headers, body, extraHeaders, finish);
}

/**
 * Writes a route's direct answer: problem+json with its reason (and detail), or its literal body. Same
 * headers as every gateway answer; a 4xx/5xx is recorded as a refusal by filter `respond`.
 */
export function writeDirect(ctx: RequestContext, res: ClientResponse, answer: DirectAnswer, finish: (ctx: RequestContext, head: ResponseHead) => void): void {
  if (answer.reason !== null && answer.status >= 400) ctx.deny = { filter: 'respond', reason: answer.reason };
  if (answer.body === null) {
    writeProblem(ctx, res, answer.status, answer.reason ?? 'direct_response', answer.detail, undefined, finish);
    return;
  }
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const headers: Record<string, string | string[] | undefined> = {
    'content-type': answer.contentType,
    'cache-control': 'no-store',
    'content-length': String(answer.body.length),
  };
  send(ctx, res, answer.status, headers, ctx.method === 'HEAD' ? '' : answer.body, undefined, finish);
}

function send(
  ctx: RequestContext,
  res: ClientResponse,
  status: number,
  headers: Record<string, string | string[] | undefined>,
  body: string | Buffer,
  extraHeaders: Record<string, string | string[] | undefined> | undefined,
  finish: (ctx: RequestContext, head: ResponseHead) => void,
): void {
  addAnswerHeaders(headers, ctx.scheme === 'https');
  if (extraHeaders !== undefined) for (const name in extraHeaders) headers[name] = extraHeaders[name];
  const head: ResponseHead = { status, headers };
  finish(ctx, head);
  ctx.status = head.status;
  if (ctx.httpVersion.charCodeAt(0) === 0x31 /* HTTP/1.x */) {
    // Answered before the request body was read to its end: where the next request starts is not known
    // to this side, so the connection closes after this answer (Connection: close) instead of guessing.
    const req = (res as import('node:http').ServerResponse).req as import('node:http').IncomingMessage | undefined;
    if (req !== undefined && !req.complete && hasBody(req)) {
      (res as import('node:http').ServerResponse).shouldKeepAlive = false;
      // The client may still be sending that body: let it read this answer before the connection goes.
      if (req.socket !== null) lingerOnClose(req.socket);
    }
  }
  (res as import('node:http').ServerResponse).writeHead(head.status, head.headers as Record<string, string | string[]>);
  res.end(body);
}
