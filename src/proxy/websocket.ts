// WebSocket pass-through (RFC 6455), and nothing else: after the route's filters let a valid handshake in,
// the handshake goes to the upstream as an HTTP request, and the connection becomes a byte pipe only once
// the upstream answered 101 with `Upgrade: websocket` and the Sec-WebSocket-Accept that matches the key.
// Any other answer is relayed as an ordinary response (gateway headers applied) and the connection closes,
// so bytes a client sends after its handshake can never reach the upstream unparsed. Other upgrade
// protocols (h2c first of all) never get here: the listeners serve them as plain HTTP with Upgrade removed.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RequestContext, ResponseHead } from '../contract/context.ts';
import type { ForwardSink } from './forwarder.ts';
import { request as httpRequest } from './node-http.ts';
import { HOP_BY_HOP, responseHeadersFrom, upstreamTarget } from './headers.ts';
import type { Upstream } from './upstream.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** 16 random bytes in base64: 22 characters and `==`. */
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** True when the request asks for `Upgrade: websocket` (the only upgrade proxied as one). */
export function wantsWebSocket(req: IncomingMessage): boolean {
  const u = req.headers.upgrade;
  return typeof u === 'string' && u.length === 9 && u.toLowerCase() === 'websocket';
}

/** Why a request that asks for a WebSocket is not a valid RFC 6455 opening handshake, or null. */
export function websocketHandshakeProblem(req: IncomingMessage): string | null {
  const h = req.headers;
  if (req.method !== 'GET' || req.httpVersion !== '1.1') return 'invalid_websocket_handshake';
  if (!wantsWebSocket(req)) return 'invalid_websocket_handshake';
  const key = h['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key)) return 'invalid_websocket_handshake';
  if (h['sec-websocket-version'] !== '13') return 'invalid_websocket_handshake';
  if (h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')) return 'invalid_websocket_handshake';
  return null;
}

export function acceptFor(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/**
 * Sends the handshake to a target of `upstream` and completes it for `client` (whose `head` bytes, read
 * after its request head, are held until the upstream switched protocols). `res` answers the client for
 * everything but a valid 101.
 */
export function proxyUpgrade(ctx: RequestContext, upstream: Upstream, client: Duplex, head: Buffer, res: ServerResponse, sink: ForwardSink): void {
  res.once('finish', () => client.end());
  const target = upstream.pick(0);
  if (target === null) {
    sink.upstreamError(upstream, 'no_healthy_upstream');
    return sink.fail(ctx, res, 503, 'no_healthy_upstream');
  }
  const key = ctx.requestHeaders['sec-websocket-key'] as string;
  const url = target.url;
  const https = url.protocol === 'https:';
  const headers = { ...ctx.upstreamHeaders, connection: 'Upgrade', upgrade: 'websocket' } as Record<string, string | string[]>;
  const started = performance.now();
  const options = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port) || (https ? 443 : 80),
    method: 'GET',
    path: upstreamTarget(ctx),
    headers,
    agent: false as const,
    // Idle time until the upstream answers the handshake (the connection's own limit is connect_timeout).
    timeout: upstream.config.timeout,
    // Same TLS as the pooled requests: CA bundle, client certificate, SNI and verification of the target.
    ...(https ? { ...upstream.tlsOptions, ...(target.servername !== undefined && !isIP(target.servername) ? { servername: target.servername } : {}) } : {}),
  };
  const upstreamRequest = (https ? httpsRequest : httpRequest)(options);
  let settled = false;
  let connected = false;
  const connectTimer = setTimeout(() => {
    if (connected || settled) return;
    upstreamRequest.destroy();
    failed(504, 'upstream_connect_timeout', true);
  }, upstream.config.connect_timeout);
  upstreamRequest.once('socket', (s: Socket) => {
    s.once(https ? 'secureConnect' : 'connect', () => {
      connected = true;
      clearTimeout(connectTimer);
    });
  });
  const failed = (status: number, reason: string, transport: boolean) => {
    clearTimeout(connectTimer);
    if (settled) return;
    settled = true;
    if (transport) upstream.failed(target, true, reason);
    sink.upstreamError(upstream, reason);
    if (!res.headersSent) sink.fail(ctx, res, status, reason);
    else client.destroy();
  };
  upstreamRequest.once('timeout', () => {
    upstreamRequest.destroy();
    failed(504, 'upstream_timeout', true);
  });
  upstreamRequest.once('error', (err: Error & { code?: string }) => {
    const unreachable = err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH';
    failed(502, unreachable ? 'upstream_unreachable' : 'upstream_failed', true);
  });
  // Client gone before the upstream answered: nothing to wait for.
  const clientGone = () => {
    if (!settled) {
      settled = true;
      ctx.status = 499;
      upstreamRequest.destroy();
    }
  };
  client.once('close', clientGone);

  // Not a switch: an ordinary answer, relayed with the gateway's headers; the connection then closes.
  upstreamRequest.once('response', (answer: IncomingMessage) => {
    if (settled) return void answer.destroy();
    settled = true;
    upstream.succeeded(target);
    ctx.upstreamStatus = answer.statusCode ?? 502;
    ctx.upstreamDurationMs = performance.now() - started;
    const out: ResponseHead = { status: answer.statusCode ?? 502, headers: responseHeadersFrom(answer.headers) };
    sink.respond(ctx, out);
    ctx.status = out.status;
    try {
      res.writeHead(out.status, out.headers as Record<string, string | string[]>);
    } catch {
      answer.destroy();
      return client.destroy();
    }
    answer.pipe(res);
    answer.once('error', () => client.destroy());
  });

  upstreamRequest.once('upgrade', (answer: IncomingMessage, socket: Socket, upstreamHead: Buffer) => {
    if (settled) return void socket.destroy();
    ctx.upstreamStatus = answer.statusCode ?? 0;
    ctx.upstreamDurationMs = performance.now() - started;
    const accept = answer.headers['sec-websocket-accept'];
    const protocol = answer.headers.upgrade;
    if (answer.statusCode !== 101 || typeof protocol !== 'string' || protocol.toLowerCase() !== 'websocket' || accept !== acceptFor(key)) {
      // The upstream switched to something that is not the WebSocket this client asked for.
      socket.destroy();
      return failed(502, 'upstream_invalid_upgrade', false);
    }
    settled = true;
    upstream.succeeded(target);
    socket.setTimeout(0);
    client.off('close', clientGone);
    let text = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
    const raw = answer.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      if (HOP_BY_HOP.has(name)) continue;
      text += `${raw[i]}: ${raw[i + 1]}\r\n`;
    }
    const extra = ctx.responseHeaders;
    for (const name in extra) {
      const v = extra[name];
      if (v === undefined || name.startsWith('access-control-')) continue;
      for (const one of Array.isArray(v) ? v : [v]) text += `${name}: ${one}\r\n`;
    }
    ctx.status = 101;
    client.write(text + '\r\n');
    if (upstreamHead.length) client.write(upstreamHead);
    if (head.length) socket.write(head);
    socket.pipe(client);
    client.pipe(socket);
    // An upgraded connection has no use for half-close: when either side ends, both are closed, so a
    // peer that never closes its end cannot pin the connection (or a draining gateway) forever.
    const closeBoth = () => {
      socket.destroy();
      client.destroy();
    };
    client.once('error', closeBoth);
    client.once('end', closeBoth);
    client.once('close', closeBoth);
    socket.once('error', closeBoth);
    socket.once('end', closeBoth);
    socket.once('close', closeBoth);
  });
  upstreamRequest.end();
}
