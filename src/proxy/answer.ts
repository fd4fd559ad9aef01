// The one function that writes the gateway's own answers: denies, no-route, bad targets, upstream
// failures. Always application/problem+json with a stable `reason` and the request id; never a stack trace.
import { STATUS_CODES } from 'node:http';
import type { RequestContext, ResponseHead } from './context.ts';
import type { ClientResponse } from './forwarder.ts';

export const PROBLEM_TYPE_BASE = 'https://portcullis.dev/reasons/';

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
  const head: ResponseHead = {
    status,
    headers: bodyless
      ? { ...extraHeaders }
      : {
          'content-type': 'application/problem+json',
          'cache-control': 'no-store',
          'content-length': String(Buffer.byteLength(body || problemBody(status, reason, ctx.id, detail))),
          ...extraHeaders,
        },
  };
  finish(ctx, head);
  ctx.status = head.status;
  (res as import('node:http').ServerResponse).writeHead(head.status, head.headers as Record<string, string | string[]>);
  res.end(body);
}
