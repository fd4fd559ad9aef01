// Rate-limit keys from body fields (`form:username`, `json:username`) against the real gateway, real Redis
// and a recording upstream: a per-account login limit holds across client addresses whatever headers the
// client sends, a field sent twice is refused before the upstream sees it, absent or unreadable fields
// count by client IP, and every forwarded body reaches the upstream byte for byte — bodies beyond the
// 16 KiB read-ahead cap, chunked bodies, HTTP/2 bodies in many DATA frames, Expect: 100-continue.
import { randomBytes, randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeCerts, type TestCerts } from '../helpers/certs.ts';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { redisCli } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;
let certs: TestCerts;
const prefix = `test:rl:body:${randomUUID().slice(0, 8)}:`;
const FORM = 'application/x-www-form-urlencoded';

interface Answer {
  status: number;
  reason?: string;
}

/** HTTP/1.1: the body in the given pieces; chunked unless `length` says to send Content-Length. */
function send(path: string, o: { ip: string; type: string; body: Buffer[]; length?: boolean; headers?: Record<string, string>; expectContinue?: boolean }): Promise<Answer & { continued: boolean }> {
  return new Promise((resolve, reject) => {
    const total = o.body.reduce((n, b) => n + b.length, 0);
    const headers: Record<string, string | number> = { 'x-forwarded-for': o.ip, 'content-type': o.type, ...o.headers };
    if (o.length !== false) headers['content-length'] = total;
    if (o.expectContinue) headers.expect = '100-continue';
    let continued = false;
    const req = request(gw.url + path, { method: 'POST', headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => {
        const reason = res.headers['content-type']?.includes('problem') ? (JSON.parse(text) as { reason: string }).reason : undefined;
        resolve({ status: res.statusCode ?? 0, reason, continued });
      });
    });
    req.on('error', reject);
    const write = async () => {
      for (const b of o.body) {
        req.write(b);
        await new Promise((r) => setImmediate(r)); // separate chunks on the wire
      }
      req.end();
    };
    if (o.expectContinue) req.on('continue', () => ((continued = true), void write()));
    else void write();
  });
}

function sendH2(path: string, o: { ip: string; type: string; body: Buffer[] }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = h2connect(gw.urls[1]!, { ca: certs.caPem, servername: 'localhost' });
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': o.type, 'x-forwarded-for': o.ip });
    let status = 0;
    let problem = false;
    let text = '';
    req.on('response', (h) => {
      status = Number(h[':status']);
      problem = String(h['content-type']).includes('problem');
    });
    req.setEncoding('utf8').on('data', (d: string) => (text += d));
    req.on('end', () => {
      session.close();
      resolve({ status, reason: problem ? (JSON.parse(text) as { reason: string }).reason : undefined });
    });
    req.on('error', reject);
    void (async () => {
      for (const b of o.body) {
        req.write(b);
        await new Promise((r) => setImmediate(r));
      }
      req.end();
    })();
  });
}

const form = (fields: string) => [Buffer.from(fields)];
const json = (v: unknown) => [Buffer.from(JSON.stringify(v))];

beforeAll(async () => {
  certs = makeCerts();
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners:
  - { address: 127.0.0.1:0 }
  - { address: 127.0.0.1:0, tls: { cert: "${certs.cert}", key: "${certs.key}" } }
admin: { address: 127.0.0.1:0 }
log: { access: off }
trusted_proxies: [127.0.0.1/32]
upstreams: { app: { url: "${upstream.url}" } }
rate_limits:
  store: { redis: "redis://127.0.0.1:6379", key_prefix: "${prefix}", command_timeout: 2s }
  form_user: { key: form:username, limit: 3, window: 1h }
  json_user: { key: json:username, limit: 3, window: 1h }
routes:
  - { name: form, match: { path: /login/form, methods: [POST] }, upstream: app, rate_limit: form_user, max_body_size: 1MiB }
  - { name: json, match: { path: /login/json, methods: [POST] }, upstream: app, rate_limit: json_user, max_body_size: 1MiB }
  - { name: small, match: { path: /login/small, methods: [POST] }, upstream: app, rate_limit: form_user, max_body_size: 8KiB }
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

describe('a per-account login limit keyed on the body', () => {
  it('form:username holds across client addresses, whatever header the client adds', async () => {
    const user = `alice-${randomUUID().slice(0, 6)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await send('/login/form', { ip: `198.51.100.${i + 1}`, type: FORM, body: form(`username=${user}&password=guess${i}`), headers: { 'x-username': `other-${i}` } })).status);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect((await send('/login/form', { ip: '198.51.100.1', type: FORM, body: form(`username=bob-${user}&password=x`) })).status).toBe(200);
    expect(upstream.received.map((r) => r.body.toString())).toEqual([0, 1, 2].map((i) => `username=${user}&password=guess${i}`).concat(`username=bob-${user}&password=x`));
    expect(await redisCli(6379, 'exists', `${prefix}{form_user:fv${user}}`)).toBe('1');
  });

  it('json:username the same, over HTTP/1.1 and HTTP/2 alike (one bucket)', async () => {
    const user = `carol-${randomUUID().slice(0, 6)}`;
    const body = (i: number) => json({ username: user, password: `guess${i}` });
    const statuses = [
      (await send('/login/json', { ip: '203.0.113.1', type: 'application/json', body: body(0) })).status,
      (await sendH2('/login/json', { ip: '203.0.113.2', type: 'application/json', body: body(1) })).status,
      (await sendH2('/login/json', { ip: '203.0.113.3', type: 'application/json; charset=utf-8', body: body(2) })).status,
      (await send('/login/json', { ip: '203.0.113.4', type: 'application/json', body: body(3), length: false })).status,
    ];
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(upstream.received.map((r) => r.body.toString())).toEqual([0, 1, 2].map((i) => body(i)[0]!.toString()));
  });

  it('a field sent twice is 400 ambiguous_body_field and never forwarded', async () => {
    const cases: [string, string, Buffer[]][] = [
      ['/login/form', FORM, form('username=alice&password=x&username=mallory')],
      ['/login/form', FORM, form('username=alice&user%6Eame=mallory')],
      ['/login/json', 'application/json', [Buffer.from('{"username":"alice","password":"x","username":"mallory"}')]],
    ];
    for (const [path, type, body] of cases) {
      expect(await send(path, { ip: '192.0.2.9', type, body })).toMatchObject({ status: 400, reason: 'ambiguous_body_field' });
      expect(await sendH2(path, { ip: '192.0.2.9', type, body })).toMatchObject({ status: 400, reason: 'ambiguous_body_field' });
    }
    expect(upstream.received).toEqual([]);
  });

  it('an absent or unreadable field counts by client IP (on_missing_key: client_ip), never in one shared bucket', async () => {
    const ip = `192.0.2.${10 + Math.floor(Math.random() * 200)}`;
    const bodies: [string, Buffer[]][] = [
      [FORM, form('password=x')], // missing
      ['text/plain', form('username=dave')], // another media type
      [FORM, [Buffer.from('username=dave&pad='), Buffer.alloc(20 * 1024, 0x61)]], // beyond the 16 KiB cap
    ];
    const statuses: number[] = [];
    for (const [type, body] of bodies) statuses.push((await send('/login/form', { ip, type, body })).status);
    statuses.push((await send('/login/form', { ip, type: FORM, body: form('password=y') })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(await redisCli(6379, 'exists', `${prefix}{form_user:~i${ip}}`)).toBe('1');
    expect(await redisCli(6379, 'exists', `${prefix}{form_user:fvdave}`)).toBe('0');
    const nonString = `192.0.2.${Math.floor(Math.random() * 10)}`;
    expect((await send('/login/json', { ip: nonString, type: 'application/json', body: json({ username: 42 }) })).status).toBe(200);
    expect(await redisCli(6379, 'exists', `${prefix}{json_user:~i${nonString}}`)).toBe('1');
  });
});

describe('the upstream gets the body byte for byte', () => {
  const big = () => [Buffer.from(`username=eve-${randomUUID().slice(0, 6)}&blob=`), ...Array.from({ length: 9 }, () => randomBytes(23_456))];

  it.each([
    ['Content-Length', true],
    ['chunked', false],
  ] as const)('HTTP/1.1 %s: small bodies, bodies beyond the cap in many chunks', async (_name, length) => {
    const small = form(`username=frank-${randomUUID().slice(0, 6)}&password=p%26ss`);
    const large = big();
    expect((await send('/login/form', { ip: '192.0.2.200', type: FORM, body: small, length })).status).toBe(200);
    expect((await send('/login/form', { ip: '192.0.2.201', type: FORM, body: large, length })).status).toBe(200);
    expect(upstream.received).toHaveLength(2);
    expect(upstream.received[0]!.body.equals(Buffer.concat(small))).toBe(true);
    expect(upstream.received[1]!.body.equals(Buffer.concat(large))).toBe(true);
    expect(upstream.received[1]!.headers['content-length']).toBe(length ? String(Buffer.concat(large).length) : undefined);
  });

  it('HTTP/2: a body in many DATA frames, beyond the cap', async () => {
    const large = big();
    expect((await sendH2('/login/form', { ip: '192.0.2.202', type: FORM, body: large })).status).toBe(200);
    expect(upstream.received[0]!.body.equals(Buffer.concat(large))).toBe(true);
  });

  it('Expect: 100-continue is answered when the gateway starts reading, and the key is read', async () => {
    const user = `grace-${randomUUID().slice(0, 6)}`;
    const answers: (Answer & { continued: boolean })[] = [];
    for (let i = 0; i < 4; i++) answers.push(await send('/login/form', { ip: `192.0.2.${210 + i}`, type: FORM, body: form(`username=${user}`), expectContinue: true }));
    expect(answers.map((a) => [a.status, a.continued])).toEqual([[200, true], [200, true], [200, true], [429, true]]);
  });

  it('a body over the route\'s max_body_size is still 413 while being read for its key, and the upstream gets nothing', async () => {
    const r = await send('/login/small', { ip: '192.0.2.220', type: FORM, body: [Buffer.from('username=heidi&blob='), Buffer.alloc(4096, 0x62), Buffer.alloc(8192, 0x62)], length: false });
    expect([r.status, r.reason]).toEqual([413, 'body_too_large']);
    expect(upstream.received).toEqual([]);
  });
});
