// Upgrade pass-through (WebSocket): after the route's filters allowed it, open a connection to the
// upstream, replay the request head, and if the upstream switches protocols, pipe bytes both ways.
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { RequestContext } from './context.ts';
import type { Upstream } from './upstream.ts';

export function proxyUpgrade(
  ctx: RequestContext,
  upstream: Upstream,
  client: Duplex,
  head: Buffer,
  fail: (status: number, reason: string) => void,
): void {
  const target = upstream.pick(0);
  if (target === null) return fail(503, 'no_healthy_upstream');
  const url = target.url;
  const https = url.protocol === 'https:';
  const port = Number(url.port) || (https ? 443 : 80);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const tls = upstream.tlsOptions;
  // Same TLS as the pooled requests: CA bundle, client certificate, SNI and verification of the target.
  const socket: Socket = https
    ? tlsConnect({ host, port, ...tls, ...(target.servername !== undefined && !isIP(target.servername) ? { servername: target.servername } : {}) })
    : netConnect({ host, port });
  socket.setTimeout(upstream.config.connect_timeout);
  let answered = false;
  socket.once('timeout', () => {
    if (!answered) {
      socket.destroy();
      upstream.failed(target, true, 'upstream_connect_timeout');
      fail(504, 'upstream_connect_timeout');
    }
  });
  socket.once('error', (err: Error & { code?: string }) => {
    if (!answered) {
      const tlsFailure = https && err.code !== 'ECONNREFUSED' && err.code !== 'ECONNRESET';
      upstream.failed(target, true, 'upstream_unreachable');
      fail(502, tlsFailure ? 'upstream_failed' : 'upstream_unreachable');
    }
    client.destroy();
  });
  socket.once(https ? 'secureConnect' : 'connect', () => {
    socket.setTimeout(0);
    upstream.succeeded(target);
    let text = `${ctx.method} ${ctx.upstreamPath ?? ctx.path}${ctx.query} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(ctx.upstreamHeaders)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`;
    }
    socket.write(text + '\r\n');
    if (head.length) socket.write(head);
    answered = true;
    // From here the upstream's answer (101 or a refusal) goes to the client byte for byte.
    socket.pipe(client);
    client.pipe(socket);
    ctx.status = 101;
    ctx.upstreamStatus = 101;
  });
  // An upgraded connection has no use for half-close: when either side ends, both are closed, so a
  // peer that never closes its end cannot pin the connection (or a draining gateway) forever.
  const closeBoth = () => {
    socket.destroy();
    client.destroy();
  };
  client.once('error', closeBoth);
  client.once('end', closeBoth);
  client.once('close', closeBoth);
  socket.once('end', closeBoth);
  socket.once('close', () => {
    if (answered) client.destroy();
  });
}
