// Reloads build a new store beside the old one and close the old one: one Redis connection per process
// however often the policy is reloaded, counts kept across reloads (they live in Redis), and a changed
// limit applies at once.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { send } from '../helpers/load.ts';
import { startRedis, waitFor, type OwnRedis } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let redis: OwnRedis;
let upstream: RecordingUpstream;
let gw: RunningGateway;

const policy = (limit: number) => `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams: { app: { url: "${upstream.url}" } }
rate_limits:
  store: { redis: "${redis.url}", command_timeout: 2s }
  per_ip: { key: client_ip, limit: ${limit}, window: 1h }
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app, rate_limit: per_ip }
`;

async function gatewayConnections(): Promise<number> {
  const list = await redis.cli('client', 'list');
  return list.split('\n').filter((l) => l.includes('addr=') && !l.includes('cmd=client|list')).length; // all but redis-cli itself
}

async function reload(): Promise<void> {
  const r = await fetch(`${gw.admin}/reload`, { method: 'POST' });
  expect(r.status).toBe(200);
}

beforeAll(async () => {
  redis = await startRedis();
  upstream = await startUpstream();
  gw = await startGateway(policy(5));
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  await redis?.stop();
});

it('keeps one connection and the counts across reloads; a new limit applies at once', async () => {
  expect(await gatewayConnections()).toBe(1);
  for (let i = 0; i < 3; i++) expect((await send(`${gw.url}/api/x`)).status).toBe(200);
  for (let i = 0; i < 3; i++) await reload();
  await waitFor(async () => (await gatewayConnections()) === 1, 'old connections closed', 5_000);
  const r = await send(`${gw.url}/api/x`);
  expect(r.ratelimit).toMatch(/^"per_ip";r=1;/); // the 4th request of 5: counts survived the reloads
  writeFileSync(gw.policyFile, policy(100));
  await reload();
  const after = await send(`${gw.url}/api/x`);
  expect(after.status).toBe(200);
  // The bucket keeps the time already used (4 requests x 12 min = 48 min) and counts it at the new rate:
  // 48 min of a 60-min window is 80 requests of the new limit, so 100 - 80 - 1 remain.
  expect(after.ratelimit).toMatch(/^"per_ip";r=19;t=29\d\d$/);
  await waitFor(async () => (await gatewayConnections()) === 1, 'old connections closed', 5_000);
});
