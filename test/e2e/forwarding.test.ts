// The real gateway process in front of a real upstream: forwarding rules and attacks on routing and framing,
// each asserting what the upstream actually received.
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { rawRequest, reasonOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let slow: RecordingUpstream;
let gw: RunningGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  slow = await startUpstream();
  slow.handler = (_req, res) => setTimeout(() => res.end('late'), 3_000);
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
limits:
  max_headers: 20
  max_body_size: 1KiB
  header_timeout: 1s
upstreams:
  app: { url: "${upstream.url}" }
  slow: { url: "${slow.url}", timeout: 500ms }
  gone: { url: "http://127.0.0.1:1", connect_timeout: 1s }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
  - name: admin
    match: { path_prefix: /admin, host: admin.local }
    upstream: app
  - name: slow
    match: { path: /slow }
    upstream: slow
  - name: gone
    match: { path: /gone }
    upstream: gone
  - name: edited
    match: { path: /edited }
    upstream: app
    response_headers: { add: { x-frame-options: DENY }, remove: [x-powered-by, server] }
`);
});

afterAll(async () => {
  // Graceful shutdown with nothing in flight: immediate, exit code 0.
  expect(await gw?.stop()).toBe(0);
  await upstream?.close();
  await slow?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
});

function get(path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(gw.url + path, { method, headers }, (res) => {
      let data = '';
      res.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('forwarding', () => {
  it('forwards to the upstream and returns its answer with a request id', async () => {
    const r = await get('/api/users?x=1');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ method: 'GET', url: '/api/users?x=1' });
    expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(upstream.received[0]!.headers['x-request-id']).toBe(r.headers['x-request-id']);
  });

  it('keeps a valid client request id and replaces an invalid one', async () => {
    expect((await get('/api/a', { 'x-request-id': 'abc-123' })).headers['x-request-id']).toBe('abc-123');
    const bad = await get('/api/a', { 'x-request-id': 'a b <script>' });
    expect(bad.headers['x-request-id']).not.toBe('a b <script>');
    expect(upstream.received[1]!.headers['x-request-id']).toBe(bad.headers['x-request-id']);
  });

  it('answers 404 itself when no route matches, forwarding nothing', async () => {
    const r = await get('/apiary');
    expect(r.status).toBe(404);
    expect(r.headers['content-type']).toBe('application/problem+json');
    const body = JSON.parse(r.body) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 404, reason: 'route_not_found' });
    expect(body.request_id).toBe(r.headers['x-request-id']);
    expect(upstream.received).toHaveLength(0);
  });

  it('routes on host', async () => {
    expect((await get('/admin/x')).status).toBe(404);
    expect((await get('/admin/x', { host: 'admin.local' })).status).toBe(200);
    expect(upstream.received).toHaveLength(1);
  });

  it('removes hop-by-hop headers, including those named in Connection', async () => {
    await get('/api/h', { connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', 'keep-alive': 'timeout=5', 'proxy-authorization': 'Basic x', te: 'trailers' });
    const h = upstream.received[0]!.headers;
    expect(h['x-secret-hop']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h.te).toBeUndefined();
  });

  it('sets X-Forwarded-* itself and drops client-sent copies from an untrusted peer', async () => {
    await get('/api/f', { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.com', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6' });
    const h = upstream.received[0]!.headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(h.forwarded).toBeUndefined();
    expect(h['x-real-ip']).toBeUndefined();
  });

  it('edits response headers per route', async () => {
    const r = await get('/edited');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['x-powered-by']).toBeUndefined();
    expect(r.headers.server).toBeUndefined();
  });

  it('streams request bodies, and refuses bodies over the limit with 413', async () => {
    const ok = await get('/api/upload', { 'content-type': 'text/plain' }, 'POST', 'x'.repeat(1000));
    expect(ok.status).toBe(200);
    expect(upstream.received[0]!.body.length).toBe(1000);
    const big = await get('/api/upload', {}, 'POST', 'x'.repeat(2000));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body).reason).toBe('body_too_large');
    expect(upstream.received).toHaveLength(1);
  });

  it('refuses an oversized chunked body before the upstream gets it whole', async () => {
    const chunk = 'y'.repeat(600);
    const text = `POST /api/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${(600).toString(16)}\r\n${chunk}\r\n${(600).toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    const res = await rawRequest(gw.url, text);
    expect(statusOf(res)).toBe(413);
    expect(upstream.received.every((r) => r.body.length <= 1024)).toBe(true);
  });

  it('answers 502 when the upstream refuses and 504 when it is too slow', async () => {
    const gone = await get('/gone');
    expect(gone.status).toBe(502);
    expect(JSON.parse(gone.body)).toMatchObject({ reason: 'upstream_unreachable' });
    const late = await get('/slow');
    expect(late.status).toBe(504);
    expect(JSON.parse(late.body)).toMatchObject({ reason: 'upstream_timeout' });
    expect(late.body).not.toMatch(/at .*\.ts:\d+/);
  });

  it('sends 100 Continue only after the filters let the request in', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(gw.url + '/api/continue', { method: 'POST', headers: { expect: '100-continue', 'content-length': '5' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('continue', () => req.end('hello'));
      req.on('error', reject);
    });
    expect(status).toBe(200);
    expect(upstream.received[0]!.body.toString()).toBe('hello');
    const denied = await rawRequest(gw.url, 'POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n');
    expect(denied).not.toContain('100 Continue');
    expect(statusOf(denied)).toBe(404);
  });

  it('passes WebSocket-style upgrades through after routing', async () => {
    upstream.server.once('upgrade', (req, socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    const { port } = new URL(gw.url);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), '127.0.0.1');
      let data = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        data += d;
        if (data.includes('\r\n\r\n') && !data.includes('echo:')) s.write('ping');
        if (data.includes('echo:ping')) {
          s.destroy();
          resolve(data);
        }
      });
      s.on('error', reject);
      s.write('GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    expect(reply).toMatch(/^HTTP\/1\.1 101/);
    expect(reply).toContain('echo:ping');
  });
});

describe('slow and departing clients', () => {
  it('aborts the upstream request when the client goes away', async () => {
    let upstreamSawClose = false;
    upstream.handler = (_req, res) => {
      res.on('close', () => (upstreamSawClose = true));
    };
    const { port } = new URL(gw.url);
    const s = connect(Number(port), '127.0.0.1');
    s.write('GET /api/hang HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((r) => {
      const t = setInterval(() => {
        if (upstream.received.length) {
          clearInterval(t);
          r();
        }
      }, 10);
    });
    s.destroy();
    for (let i = 0; i < 100 && !upstreamSawClose; i++) await new Promise((r) => setTimeout(r, 20));
    upstream.handler = null;
    expect(upstreamSawClose).toBe(true);
  });

  it('closes a connection whose request head is not complete within header_timeout (408)', async () => {
    const { port } = new URL(gw.url);
    const started = Date.now();
    const answer = await new Promise<string>((resolve) => {
      const s = connect(Number(port), '127.0.0.1');
      let data = '';
      s.setEncoding('latin1').on('data', (d: string) => (data += d));
      s.on('close', () => resolve(data));
      s.write('GET /api/slowloris HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n');
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    if (answer) expect(statusOf(answer)).toBe(408);
    expect(upstream.received).toHaveLength(0);
  });
});

describe('attacks on routing and framing (raw sockets)', () => {
  const send = (line: string, extra = '') => rawRequest(gw.url, `${line}\r\nHost: x\r\n${extra}Connection: close\r\n\r\n`);

  it.each([
    ['GET /api/..%2fadmin HTTP/1.1', 400, 'encoded_path_separator'],
    ['GET /api/%2e%2e/%2e%2e/etc/passwd HTTP/1.1', 400, 'path_traversal'],
    ['GET /api/..\\admin HTTP/1.1', 400, undefined],
    ['GET /api/%00 HTTP/1.1', 400, 'control_character'],
    ['GET /api/%zz HTTP/1.1', 400, 'invalid_percent_encoding'],
    ['GET /api/%c3%28 HTTP/1.1', 400, 'invalid_utf8'],
    ['GET http://other.example/api/x HTTP/1.1', 400, 'host_mismatch'],
  ])('%s → %i %s, nothing forwarded', async (line, status, reason) => {
    const res = await send(line);
    expect(statusOf(res)).toBe(status);
    if (reason) expect(reasonOf(res)).toBe(reason);
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses an upgrade whose absolute-form target names another host, as for any request', async () => {
    const res = await rawRequest(gw.url, 'GET http://admin.local/admin/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    expect(statusOf(res)).toBe(400);
    expect(reasonOf(res)).toBe('host_mismatch');
    expect(upstream.received).toHaveLength(0);
  });

  it('forwards the normalized path, the same one it routed', async () => {
    const res = await send('GET /api/x/../%61b//c/./d HTTP/1.1');
    expect(statusOf(res)).toBe(200);
    expect(upstream.received.map((r) => r.url)).toEqual(['/api/ab/c/d']);
    // A dot segment cannot carry a request out of its route into another one.
    const res2 = await send('GET /api/../admin/x HTTP/1.1');
    expect(statusOf(res2)).toBe(404);
    expect(upstream.received).toHaveLength(1);
  });

  it.each([
    ['Content-Length with Transfer-Encoding', 'POST /api/s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['duplicate Content-Length', 'POST /api/s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde'],
    ['same duplicate Content-Length', 'POST /api/s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd'],
    ['obsolete line folding', 'GET /api/s HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n'],
    ['Transfer-Encoding other than chunked', 'POST /api/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['Transfer-Encoding with a space before the colon', 'POST /api/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n'],
    ['a bare LF in a header', 'GET /api/s HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n\r\n'],
    ['a request smuggled after a chunked body', 'POST /api/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: admin.local\r\n\r\n'],
  ])('%s → 400, nothing forwarded', async (_name, text) => {
    const res = await rawRequest(gw.url, text);
    expect(statusOf(res)).toBe(400);
    expect(res).toContain('application/problem+json');
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses too many headers with 431', async () => {
    const headers = Array.from({ length: 30 }, (_, i) => `X-H${i}: v\r\n`).join('');
    const res = await send('GET /api/x HTTP/1.1', headers);
    expect(statusOf(res)).toBe(431);
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses an oversized header block with 431', async () => {
    const res = await send('GET /api/x HTTP/1.1', `X-Big: ${'a'.repeat(20_000)}\r\n`);
    expect(statusOf(res)).toBe(431);
    expect(reasonOf(res)).toBe('header_too_large');
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses a request without Host', async () => {
    const res = await rawRequest(gw.url, 'GET /api/x HTTP/1.1\r\nConnection: close\r\n\r\n');
    expect(statusOf(res)).toBe(400);
    expect(upstream.received).toHaveLength(0);
  });
});
