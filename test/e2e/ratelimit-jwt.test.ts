// Limits keyed by a verified claim behind the real JWT filter: one bucket per subject, whether the token
// comes in the Authorization header or the cookie, and whichever of its tokens the subject uses.
// Unauthenticated requests are refused by auth before they cost any quota.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { SECRET, hs256 } from '../helpers/identity.ts';
import { redisCli } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;
const prefix = `test:rl:jwt:${randomUUID().slice(0, 8)}:`;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: main
  providers:
    main:
      jwt:
        algorithms: [HS256]
        keys: [{ kid: k1, secret: "\${env:JWT_SECRET}" }]
        token_from: [{ header: Authorization, scheme: Bearer }, { cookie: access_token }]
rate_limits:
  store: { redis: "redis://127.0.0.1:6379", key_prefix: "${prefix}", command_timeout: 2s }
  per_user: { key: claim:sub, limit: 3, window: 1h }
  per_ip: { key: client_ip, limit: 1000, window: 1h }
routes:
  - { name: me, match: { path: /me }, upstream: app, rate_limit: [per_user, per_ip] }
`, { env: { JWT_SECRET: SECRET } });
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  const keys = (await redisCli(6379, '--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean);
  if (keys.length) await redisCli(6379, 'del', ...keys);
});

function get(headers: Record<string, string>): Promise<{ status: number; reason?: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}/me`, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => {
        const reason = res.headers['content-type']?.includes('problem') ? (JSON.parse(body) as { reason: string }).reason : undefined;
        resolve({ status: res.statusCode ?? 0, reason, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

it('one bucket per subject, however and with whichever token it comes', async () => {
  const t1 = await hs256({ sub: 'mallory' }, { kid: 'k1' });
  const t2 = await hs256({ sub: 'mallory', jti: randomUUID() }, { kid: 'k1' });
  const first = await get({ authorization: `Bearer ${t1}` });
  expect(first.status).toBe(200);
  expect(first.headers['ratelimit-policy']).toBe('"per_user";q=3;w=3600, "per_ip";q=1000;w=3600');
  expect(first.headers.ratelimit).toMatch(/^"per_user";r=2;t=\d+, "per_ip";r=\d+;t=\d+$/);
  expect((await get({ cookie: `access_token=${t1}` })).status).toBe(200);
  expect((await get({ authorization: `Bearer ${t2}` })).status).toBe(200);
  const over = await get({ cookie: `access_token=${t2}` });
  expect(over).toMatchObject({ status: 429, reason: 'rate_limited' });
  expect(Number(over.headers['retry-after'])).toBeGreaterThan(1000);
  // Another subject is another bucket.
  expect((await get({ authorization: `Bearer ${await hs256({ sub: 'alice' }, { kid: 'k1' })}` })).status).toBe(200);
  expect(upstream.received.length).toBe(4);
});

it('requests auth refuses cost no quota', async () => {
  const before = Number(await redisCli(6379, 'get', `${prefix}{per_ip:i127.0.0.1}`)) || 0;
  for (let i = 0; i < 5; i++) expect((await get({ authorization: 'Bearer not-a-token' })).status).toBe(401);
  const after = Number(await redisCli(6379, 'get', `${prefix}{per_ip:i127.0.0.1}`)) || 0;
  // The per-IP bucket's theoretical arrival time moved only by elapsed time, not by 5 requests (3.6s each).
  expect(after - before).toBeLessThan(3600);
});
