// Three gateway processes share one Redis: 64 concurrent clients on one key, limit 100 per window,
// exactly 100 requests get through in total; every other answer is 429 rate_limited.
import { randomUUID } from 'node:crypto';
import { Agent } from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { send, type Sample } from '../helpers/load.ts';
import { redisCli } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
const gateways: RunningGateway[] = [];
const prefix = `test:rl:acc:${randomUUID().slice(0, 8)}:`;

beforeAll(async () => {
  upstream = await startUpstream();
  const policy = `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams: { app: { url: "${upstream.url}" } }
rate_limits:
  store: { redis: "redis://127.0.0.1:6379", key_prefix: "${prefix}", on_redis_failure: deny, command_timeout: 3s }
  per_ip: { key: client_ip, limit: 100, window: 1h }
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app, rate_limit: per_ip }
`;
  gateways.push(...(await Promise.all([1, 2, 3].map(() => startGateway(policy)))));
});

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await upstream?.close();
  const keys = (await redisCli(6379, '--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean);
  if (keys.length) await redisCli(6379, 'del', ...keys);
});

it('lets exactly 100 requests through across 3 gateways and 64 concurrent clients', async () => {
  const agents = gateways.map(() => new Agent({ keepAlive: true, maxSockets: 64 }));
  const samples: Sample[] = [];
  await Promise.all(Array.from({ length: 64 }, async (_, client) => {
    for (let i = 0; i < 6; i++) {
      const g = (client + i) % 3;
      samples.push(await send(`${gateways[g]!.url}/api/x`, agents[g]));
    }
  }));
  for (const a of agents) a.destroy();
  expect(samples.length).toBe(384);
  expect(samples.filter((s) => s.status !== 200 && s.status !== 429)).toEqual([]);
  expect(samples.filter((s) => s.status === 200).length).toBe(100);
  expect(samples.filter((s) => s.status === 429 && s.reason === 'rate_limited').length).toBe(284);
  expect(upstream.received.length).toBe(100);
  // One shared count: the remaining quota reported by the three processes is 99, 98, ... 0, each once.
  const remaining = samples.filter((s) => s.status === 200).map((s) => Number(/r=(\d+)/.exec(s.ratelimit ?? '')?.[1]));
  expect(remaining.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
});
