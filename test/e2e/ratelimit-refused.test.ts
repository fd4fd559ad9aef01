// Refusal limits (`count: refused`) against real gateway processes and real Redis: token guessing from
// one address is cut off after its budget of refusals, before anything more of it is verified (a valid
// token included), while the requests of other addresses and the accepted requests spend nothing.
// Refusals by CSRF, CORS or body limits are no identity refusals and spend nothing. Two gateways share
// one budget through Redis, and each `on_redis_failure` mode does what it says when Redis is gone.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { SECRET, hs256 } from '../helpers/identity.ts';
import { redisCli, startRedis, type OwnRedis } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

interface Answer {
  status: number;
  reason?: string;
  headers: Record<string, string | string[] | undefined>;
}

function send(base: string, path: string, o: { ip: string; token?: string; method?: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'x-forwarded-for': o.ip, ...o.headers };
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    const req = request(base + path, { method: o.method ?? 'GET', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => {
        const reason = res.headers['content-type']?.includes('problem') ? (JSON.parse(body) as { reason: string }).reason : undefined;
        resolve({ status: res.statusCode ?? 0, reason, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

function policy(upstream: string, redis: string, prefix: string, store = ''): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
trusted_proxies: [127.0.0.1/32]
upstreams: { app: { url: "${upstream}" } }
auth:
  default: main
  providers:
    main:
      jwt:
        algorithms: [HS256]
        keys: [{ kid: k1, secret: "\${env:JWT_SECRET}" }]
body:
  json_only: { content_types: [application/json] }
rate_limits:
  store: { redis: "${redis}", key_prefix: "${prefix}", command_timeout: 1s, connect_timeout: 200ms${store} }
  refusals: { key: client_ip, limit: 3, window: 1h, count: refused }
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app, rate_limit: refusals }
  - { name: admin, match: { path_prefix: /admin }, upstream: app, authorize: { roles_any: [admin] }, rate_limit: refusals }
  - { name: upload, match: { path: /upload, methods: [POST] }, upstream: app, body: json_only, rate_limit: refusals }
`;
}

async function cleanup(prefix: string): Promise<void> {
  const keys = (await redisCli(6379, '--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean);
  if (keys.length) await redisCli(6379, 'del', ...keys);
}

async function metric(gw: RunningGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gw.admin}/metrics`)).text();
  const found = text.split('\n').find((l) => line.test(l));
  return found === undefined ? 0 : Number(found.split(' ').pop());
}

describe('count: refused, shared in Redis', () => {
  let upstream: RecordingUpstream;
  let gw: RunningGateway;
  let gw2: RunningGateway;
  const prefix = `test:rl:refused:${randomUUID().slice(0, 8)}:`;
  let good: string;
  let user: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    const text = policy(upstream.url, 'redis://127.0.0.1:6379', prefix);
    [gw, gw2] = await Promise.all([startGateway(text, { env: { JWT_SECRET: SECRET } }), startGateway(text, { env: { JWT_SECRET: SECRET } })]);
    good = await hs256({ sub: 'admin-1', roles: ['admin'] }, { kid: 'k1' });
    user = await hs256({ sub: 'user-1', roles: ['user'] }, { kid: 'k1' });
  });

  afterAll(async () => {
    await gw?.stop();
    await gw2?.stop();
    await upstream?.close();
    await cleanup(prefix);
  });

  it('token guessing from one address: its budget of refusals, then 429 before any token is verified, a valid one included', async () => {
    const ip = '203.0.113.10';
    const statuses: (string | number)[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await send(gw.url, '/api/x', { ip, token: await hs256({ sub: 'guess' }, { kid: 'k1', secret: 'wrong-secret-wrong-secret-wrong-secret!!' }) });
      statuses.push(`${r.status} ${r.reason}`);
    }
    expect(statuses).toEqual(['401 token_signature_invalid', '401 token_signature_invalid', '401 token_signature_invalid']);
    const seen = upstream.received.length;
    const cut = await send(gw.url, '/api/x', { ip, token: good });
    expect([cut.status, cut.reason]).toEqual([429, 'too_many_refusals']);
    // 3 an hour: the next refusal fits in one interval (1200 s), less the seconds this test took.
    expect(Number(cut.headers['retry-after'])).toBeGreaterThan(1100);
    expect(Number(cut.headers['retry-after'])).toBeLessThanOrEqual(1200);
    expect(cut.headers['ratelimit-policy']).toBeUndefined(); // a refusal budget is no request quota
    expect(upstream.received.length).toBe(seen); // the valid token was not even looked at
    // The other gateway shares the budget through Redis.
    expect((await send(gw2.url, '/api/x', { ip, token: good })).reason).toBe('too_many_refusals');
    // Another address is another budget; the bucket is the client IP's.
    expect((await send(gw.url, '/api/x', { ip: '203.0.113.11', token: good })).status).toBe(200);
    expect(await redisCli(6379, 'exists', `${prefix}{refusals:i${ip}}`)).toBe('1');
    expect(await metric(gw, /^portcullis_rate_limit_refusals_total\{route="api",limit="refusals"\}/)).toBe(3);
    expect(await metric(gw, /^portcullis_rate_limit_decisions_total\{.*route="api",limit="refusals",decision="limited",source="redis"/)).toBe(1);
  });

  it('accepted requests spend nothing; authorize 403s spend like auth 401s, on every route naming the limit', async () => {
    const ip = '203.0.113.20';
    for (let i = 0; i < 10; i++) expect((await send(gw.url, '/api/y', { ip, token: good })).status).toBe(200);
    expect(await redisCli(6379, 'exists', `${prefix}{refusals:i${ip}}`)).toBe('0'); // looking wrote nothing
    const refused: (string | number)[] = [];
    refused.push((await send(gw.url, '/admin/z', { ip, token: user })).reason!); // authorize: role missing
    refused.push((await send(gw2.url, '/api/y', { ip })).reason!); // no token
    refused.push((await send(gw.url, '/admin/z', { ip, token: user })).reason!);
    expect(refused).toEqual(['role_missing', 'token_missing', 'role_missing']);
    expect((await send(gw.url, '/api/y', { ip, token: good })).reason).toBe('too_many_refusals');
  });

  it('refusals that are not about identity (body limits, no route) spend nothing', async () => {
    const ip = '203.0.113.30';
    for (let i = 0; i < 5; i++) {
      const r = await send(gw.url, '/upload', { ip, token: good, method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
      expect([r.status, r.reason]).toEqual([415, 'unsupported_media_type']);
    }
    for (let i = 0; i < 5; i++) expect((await send(gw.url, '/nowhere', { ip, token: good })).status).toBe(404);
    const ok = await send(gw.url, '/upload', { ip, token: good, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(ok.status).toBe(200);
    expect(await redisCli(6379, 'exists', `${prefix}{refusals:i${ip}}`)).toBe('0');
  });
});

describe.each(['local', 'deny', 'allow'] as const)('count: refused while Redis is gone, on_redis_failure: %s', (mode) => {
  let redis: OwnRedis;
  let upstream: RecordingUpstream;
  let gw: RunningGateway;
  let good: string;

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startUpstream();
    gw = await startGateway(policy(upstream.url, redis.url, 'refused-faults:', `, on_redis_failure: ${mode}, probe_interval: 100ms`), { env: { JWT_SECRET: SECRET } });
    good = await hs256({ sub: 'admin-1', roles: ['admin'] }, { kid: 'k1' });
    await redis.kill();
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    await redis?.stop();
  });

  it('answers as the mode says, never 500', async () => {
    const ip = '198.51.100.7';
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await send(gw.url, '/api/x', { ip });
      answers.push(`${r.status} ${r.reason}`);
    }
    const last = await send(gw.url, '/api/x', { ip, token: good });
    answers.push(`${last.status} ${last.reason ?? ''}`.trim());
    const expected = {
      // counted in process: the same budget, per gateway process
      local: ['401 token_missing', '401 token_missing', '401 token_missing', '429 too_many_refusals', '429 too_many_refusals'],
      deny: ['503 ratelimit_unavailable', '503 ratelimit_unavailable', '503 ratelimit_unavailable', '503 ratelimit_unavailable', '503 ratelimit_unavailable'],
      allow: ['401 token_missing', '401 token_missing', '401 token_missing', '401 token_missing', '200'],
    }[mode];
    expect(answers).toEqual(expected);
  });
});
