// A real local auth service behind the real gateway: it allows, denies, fails, hangs and recovers. The
// gateway retries with backoff, answers 503 auth_unavailable when the service stays down, passes the
// service's 401/403 on, copies identity headers upstream and caches decisions per credential.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

type Mode = 'ok' | 'deny401' | 'deny403' | 'fail' | 'hang';
let mode: Mode = 'ok';
/** Fail this many calls with 500, then answer per `mode`. */
let failFirst = 0;
const calls: IncomingHttpHeaders[] = [];
let service: Server;
let upstream: RecordingUpstream;
let gw: RunningGateway;

beforeAll(async () => {
  service = createServer((req, res) => {
    calls.push(req.headers);
    if (failFirst > 0) {
      failFirst--;
      res.writeHead(500).end();
      return;
    }
    const auth = req.headers.authorization ?? '';
    switch (mode) {
      case 'hang':
        return; // never answers
      case 'fail':
        res.writeHead(502).end();
        return;
      case 'deny401':
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="corp", error="invalid_token"' }).end('no');
        return;
      case 'deny403':
        res.writeHead(403).end('no');
        return;
      default: {
        const user = auth.replace('Bearer ', '');
        res.writeHead(200, { 'x-user-id': user, 'x-user-roles': user.startsWith('admin') ? 'admin' : 'user', 'x-internal': 'secret' }).end();
      }
    }
  });
  await new Promise<void>((r) => service.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(service.address() as AddressInfo).port}/check`;
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: ext
  providers:
    ext:
      forward: { url: "${url}", timeout: 300ms, attempts: 3, backoff: 20ms, copy_headers: [X-User-Id], subject_header: X-User-Id, roles_header: X-User-Roles }
    cached:
      forward: { url: "${url}", timeout: 300ms, attempts: 3, backoff: 20ms, cache_ttl: 1m, copy_headers: [X-User-Id], subject_header: X-User-Id }
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app, authorize: { methods: { user: [GET, HEAD], admin: ["*"] } } }
  - { name: cached, match: { path_prefix: /cached }, upstream: app, auth: cached }
`);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  service?.closeAllConnections();
  await new Promise((r) => service?.close(() => r(undefined)));
});

beforeEach(() => {
  upstream.received.length = 0;
  calls.length = 0;
  mode = 'ok';
  failFirst = 0;
});

async function send(path: string, token: string | null, method = 'GET', extra: Record<string, string> = {}) {
  const r = await fetch(gw.url + path, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra } });
  const body = await r.text();
  return { status: r.status, headers: r.headers, reason: r.status >= 400 ? (JSON.parse(body) as { reason: string }).reason : undefined };
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${gw.admin.startsWith('http') ? '' : 'http://'}${gw.admin}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + '{') && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('forward auth', () => {
  it('asks the service with method, URI and the credential; copies its identity header upstream', async () => {
    const r = await send('/api/items?page=2', 'alice', 'GET', { 'x-user-id': 'root', 'x-user-roles': 'admin' });
    expect(r.status).toBe(200);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/api/items?page=2', authorization: 'Bearer alice' });
    expect(upstream.received[0]!.headers['x-user-id']).toBe('alice');
    expect(upstream.received[0]!.headers['x-internal']).toBeUndefined();
    expect(upstream.received[0]!.headers['x-user-roles']).toBeUndefined(); // read from the service, not copied: client copy removed
  });

  it('passes the service 401 (with its challenge) and 403 to the client, forwarding nothing', async () => {
    mode = 'deny401';
    const r401 = await send('/api/x', 'alice');
    expect([r401.status, r401.reason]).toEqual([401, 'auth_denied']);
    expect(r401.headers.get('www-authenticate')).toBe('Bearer realm="corp", error="invalid_token"');
    mode = 'deny403';
    const r403 = await send('/api/x', 'alice');
    expect([r403.status, r403.reason]).toEqual([403, 'auth_denied']);
    expect(upstream.received).toHaveLength(0);
  });

  it('answers 503 auth_unavailable after all attempts fail', async () => {
    mode = 'fail';
    const before = await metric('portcullis_forward_auth_decisions_total', { provider: 'ext', decision: 'unavailable' });
    const r = await send('/api/x', 'alice');
    expect([r.status, r.reason]).toEqual([503, 'auth_unavailable']);
    expect(r.headers.get('retry-after')).toBe('5');
    expect(calls).toHaveLength(3);
    expect(upstream.received).toHaveLength(0);
    expect(await metric('portcullis_forward_auth_decisions_total', { provider: 'ext', decision: 'unavailable' })).toBe(before + 1);
  });

  it('times out a hanging service on every attempt, then 503', async () => {
    mode = 'hang';
    const before = await metric('portcullis_forward_auth_failures_total', { provider: 'ext', reason: 'timeout' });
    const r = await send('/api/x', 'alice');
    expect([r.status, r.reason]).toEqual([503, 'auth_unavailable']);
    expect(calls).toHaveLength(3);
    expect(await metric('portcullis_forward_auth_failures_total', { provider: 'ext', reason: 'timeout' })).toBe(before + 3);
    expect(upstream.received).toHaveLength(0);
  });

  it('recovers: two failures then success within the attempts lets the request through', async () => {
    failFirst = 2;
    const r = await send('/api/x', 'alice');
    expect(r.status).toBe(200);
    expect(calls).toHaveLength(3);
    expect(upstream.received).toHaveLength(1);
  });

  it('role rules by method use the roles the service returned', async () => {
    expect((await send('/api/items/1', 'bob', 'GET')).status).toBe(200);
    const del = await send('/api/items/1', 'bob', 'DELETE');
    expect([del.status, del.reason]).toEqual([403, 'method_not_allowed_for_role']);
    expect((await send('/api/items/1', 'admin-carol', 'DELETE')).status).toBe(200);
    expect(upstream.received.map((r) => r.method)).toEqual(['GET', 'DELETE']);
  });

  it('caches decisions per credential when cache_ttl is set', async () => {
    expect((await send('/cached/a', 'dave')).status).toBe(200);
    expect((await send('/cached/b', 'dave')).status).toBe(200);
    expect(calls).toHaveLength(1);
    mode = 'fail'; // a cached allow survives a failing service
    expect((await send('/cached/c', 'dave')).status).toBe(200);
    expect((await send('/cached/c', 'erin')).status).toBe(503);
    expect(upstream.received.map((r) => r.headers['x-user-id'])).toEqual(['dave', 'dave', 'dave']);
  });

  it('a burst of one uncached credential asks the service once', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => send(`/cached/${i}`, 'frank')));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(calls).toHaveLength(1);
  });
});
