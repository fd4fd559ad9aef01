// Attempts to look like many clients, each of which must be limited as one: X-Forwarded-For rotation
// from an untrusted peer, IPv6 addresses within one /64 (via a trusted proxy), path case and encoding
// variants of the limited route, the same token sent in the header and in a cookie.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { rawRequest, reasonOf, statusOf } from '../helpers/raw.ts';
import { redisCli } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;
const prefix = `test:rl:ev:${randomUUID().slice(0, 8)}:`;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
trusted_proxies: [127.0.0.2/32]
upstreams: { app: { url: "${upstream.url}" } }
rate_limits:
  store: { redis: "redis://127.0.0.1:6379", key_prefix: "${prefix}" }
  login: { key: client_ip, limit: 3, window: 1h }
  per_ip: { key: client_ip, limit: 3, window: 1h }
  per_token: { key: token, limit: 3, window: 1h }
  login_ci: { key: client_ip, limit: 3, window: 1h }
routes:
  # An upstream that reads /API/LOGIN as /api/login: the route says so, and a catch-all sits beside it.
  - { name: ci-login, match: { host: ci.local, path_prefix: /api/login, case_sensitive: false }, upstream: app, rate_limit: login_ci }
  - { name: ci-rest, match: { host: ci.local, path_prefix: / }, upstream: app }
  - { name: login, match: { path_prefix: /api/login }, upstream: app, rate_limit: login }
  - { name: ip, match: { path_prefix: /ip }, upstream: app, rate_limit: per_ip }
  - { name: data, match: { path_prefix: /data }, upstream: app, rate_limit: per_token }
`);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  const keys = (await redisCli(6379, '--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean);
  if (keys.length) await redisCli(6379, 'del', ...keys);
});

beforeEach(() => {
  upstream.received.length = 0;
});

function get(path: string, headers: Record<string, string> = {}, localAddress = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(gw.url + path, { headers, localAddress, agent: false }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('evasion attempts are limited as one client', () => {
  it('X-Forwarded-For rotation from an untrusted peer', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push(await get('/ip', { 'x-forwarded-for': `203.0.113.${i}`, forwarded: `for=198.51.100.${i}`, 'x-real-ip': `192.0.2.${i}` }));
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429, 429, 429]);
    expect(upstream.received.length).toBe(3);
  });

  it('IPv6 addresses within one /64 (behind a trusted proxy); another /64 is another client', async () => {
    const statuses: number[] = [];
    for (const ip of ['2001:db8:aa:bb::1', '2001:db8:aa:bb:ffff:ffff:ffff:fffe', '2001:0DB8:00aa:00bb:a:b:c:d', '2001:db8:aa:bb::42', '2001:db8:aa:bb:dead:beef:0:1']) {
      statuses.push(await get('/ip', { 'x-forwarded-for': ip }, '127.0.0.2'));
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(await get('/ip', { 'x-forwarded-for': '2001:db8:aa:bc::1' }, '127.0.0.2')).toBe(200);
  });

  it('path case and encoding variants of the limited route', async () => {
    const variants = ['/api/login', '/api/%6Cogin', '/api//login', '/api/./login', '/api/x/../login', '/%61pi/login?next=/', '/api/login/'];
    const statuses = [];
    for (const v of variants) statuses.push(statusOf(await rawRequest(gw.url, `GET ${v} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`)));
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429, 429]);
    // Another spelling of the path is another route, or none: never forwarded unlimited.
    const upper = await rawRequest(gw.url, 'GET /API/LOGIN HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(statusOf(upper)).toBe(404);
    expect(reasonOf(upper)).toBe('route_not_found');
    const encodedSlash = await rawRequest(gw.url, 'GET /api%2Flogin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(statusOf(encodedSlash)).toBe(400);
    expect(upstream.received.length).toBe(3);
    expect(upstream.received.every((r) => r.url.startsWith('/api/login'))).toBe(true);
  });

  it('path case variants of a case-insensitive limited route, next to a catch-all route', async () => {
    const variants = ['/api/login', '/API/LOGIN', '/Api/Login', '/API/%4cOGIN', '/aPi//LoGiN/'];
    const statuses = [];
    for (const v of variants) statuses.push(statusOf(await rawRequest(gw.url, `GET ${v} HTTP/1.1\r\nHost: ci.local\r\nConnection: close\r\n\r\n`)));
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(upstream.received.length).toBe(3);
    // The catch-all still answers other paths, unlimited by the login limit.
    expect(statusOf(await rawRequest(gw.url, 'GET /other HTTP/1.1\r\nHost: ci.local\r\nConnection: close\r\n\r\n'))).toBe(200);
  });

  it('the same token in the Authorization header and in the cookie, from several addresses', async () => {
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.' + randomUUID();
    const statuses = [
      await get('/data', { authorization: `Bearer ${token}` }),
      await get('/data', { cookie: `access_token=${token}` }, '127.0.0.2'),
      await get('/data', { authorization: `bearer ${token}`, cookie: 'access_token=other' }),
      await get('/data', { cookie: `a=b; access_token=${token}` }, '127.0.0.2'),
      await get('/data', { authorization: `Bearer ${token}` }),
    ];
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
  });
});
