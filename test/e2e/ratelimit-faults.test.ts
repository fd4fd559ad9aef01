// Redis faults under load, for each failure mode: killed mid-load and restarted, paused (CLIENT PAUSE)
// beyond the command timeout, SCRIPT FLUSH between requests. Each mode does what it declares, no request
// waits past the timeout, no 500, and the gateway is back on Redis within a second of Redis answering.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { send, startLoad, type Sample } from '../helpers/load.ts';
import { startRedis, sleep, waitFor, type OwnRedis } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

type Mode = 'local' | 'deny' | 'allow';

/** What each mode answers while Redis fails: the statuses (and reasons) allowed in that period. */
const DURING_OUTAGE: Record<Mode, (s: Sample) => boolean> = {
  local: (s) => s.status === 200 || (s.status === 429 && s.reason === 'rate_limited'),
  deny: (s) => s.status === 503 && s.reason === 'ratelimit_unavailable',
  allow: (s) => s.status === 200,
};

async function readyz(gw: RunningGateway): Promise<number> {
  return (await send(`${gw.admin}/readyz`)).status;
}

/** Counted by Redis: the shared limit is 100000, the local one 20, so a large `r` can only come from Redis. */
function fromRedis(s: Sample): boolean {
  return s.status === 200 && Number(/r=(\d+)/.exec(s.ratelimit ?? '')?.[1] ?? 0) > 1000;
}

/** Milliseconds from `since` to the first answer counted by Redis again. */
function recoveredAfter(samples: Sample[], since: number): number {
  const first = samples.find((s) => s.at >= since && fromRedis(s));
  return first === undefined ? Infinity : first.at - since;
}

async function backOnRedis(gw: RunningGateway): Promise<void> {
  await waitFor(async () => fromRedis(await send(`${gw.url}/api/x`)), 'gateway back on Redis', 5_000);
}

describe.each(['local', 'deny', 'allow'] as const)('on_redis_failure: %s', (mode) => {
  let redis: OwnRedis;
  let upstream: RecordingUpstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startUpstream();
    gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams: { app: { url: "${upstream.url}" } }
rate_limits:
  store:
    redis: "${redis.url}"
    on_redis_failure: ${mode}
    local_limit: { limit: 20, window: 1m }
    command_timeout: 500ms
    connect_timeout: 200ms
    required: true
  per_ip: { key: client_ip, limit: 100000, window: 1d }
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app, rate_limit: per_ip }
`);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    await redis?.stop();
  });

  it('Redis killed mid-load and restarted', async () => {
    const load = startLoad(`${gw.url}/api/x`, 8);
    await sleep(300);
    const killedAt = Date.now();
    await redis.kill();
    await sleep(700);
    expect(await readyz(gw)).toBe(503);
    const outageEnd = Date.now();
    await redis.start();
    const restarted = Date.now();
    await sleep(1200);
    const samples = await load.stop();

    expect(samples.filter((s) => s.status === 0 || s.status >= 500 && s.status !== 503)).toEqual([]);
    expect(Math.max(...samples.map((s) => s.ms))).toBeLessThan(1000);
    const before = samples.filter((s) => s.at < killedAt - 50);
    expect(before.length).toBeGreaterThan(10);
    expect(before.filter(fromRedis).length).toBeGreaterThanOrEqual(before.length * 0.9); // (a loaded CI machine may time out one)
    // Once the first failure is seen, the declared mode answers.
    const during = samples.filter((s) => s.at > killedAt + 300 && s.at < outageEnd);
    expect(during.length).toBeGreaterThan(10);
    expect(during.filter((s) => !DURING_OUTAGE[mode](s))).toEqual([]);
    if (mode === 'local') expect(during.some((s) => s.status === 429)).toBe(true); // the local limit of 20 applies

    // After the restart every answer is the shared limiter's again.
    expect(recoveredAfter(samples, restarted)).toBeLessThan(1000);
    const after = samples.filter((s) => s.at > restarted + 1000);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter(fromRedis).length).toBeGreaterThanOrEqual(after.length * 0.9);
    expect(await readyz(gw)).toBe(200);
  });

  it('Redis paused longer than the command timeout', async () => {
    await backOnRedis(gw);
    const load = startLoad(`${gw.url}/api/x`, 8);
    await sleep(200);
    const pausedAt = Date.now();
    await redis.cli('client', 'pause', '1500', 'ALL');
    await sleep(1500);
    const resumedAt = Date.now();
    await sleep(1500);
    const samples = await load.stop();
    expect(samples.filter((s) => s.status === 0 || s.status >= 500 && s.status !== 503)).toEqual([]);
    // Nobody waits on a paused Redis longer than the 500ms command timeout (plus scheduling slack).
    expect(Math.max(...samples.map((s) => s.ms))).toBeLessThan(1200);
    const during = samples.filter((s) => s.at > pausedAt + 700 && s.at < resumedAt - 50);
    expect(during.length).toBeGreaterThan(10);
    expect(during.filter((s) => !DURING_OUTAGE[mode](s))).toEqual([]);
    // CLIENT PAUSE ends 1500ms after it was sent: back on Redis within a second of that.
    expect(recoveredAfter(samples, pausedAt + 1500)).toBeLessThan(1000);
    const after = samples.filter((s) => s.at > resumedAt + 1000);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter(fromRedis).length).toBeGreaterThanOrEqual(after.length * 0.9);
  });

  it('SCRIPT FLUSH between requests changes nothing', async () => {
    await backOnRedis(gw);
    const a = await send(`${gw.url}/api/x`);
    await redis.cli('script', 'flush');
    const b = await send(`${gw.url}/api/x`);
    const c = await send(`${gw.url}/api/x`);
    for (const s of [a, b, c]) {
      expect(s.status).toBe(200);
      expect(s.ratelimit).toMatch(/^"per_ip";r=\d+;t=\d+$/);
    }
    // Counting went on in the same bucket (one unit may have refilled meanwhile: one per 864ms).
    const spent = Number(/r=(\d+)/.exec(a.ratelimit!)![1]) - Number(/r=(\d+)/.exec(c.ratelimit!)![1]);
    expect(spent).toBeGreaterThanOrEqual(1);
    expect(spent).toBeLessThanOrEqual(2);
  });

  it('logs each state change once', () => {
    // Down and up alternate: one line per change, never one per failed request (hundreds failed).
    const changes = gw.stderr().split('\n').filter((l) => l.includes('rate-limit store: Redis')).map((l) => (l.includes('unavailable') ? 'down' : l.includes('connected') ? 'start' : 'up'));
    expect(changes[0]).toBe('start');
    expect(changes.filter((c) => c === 'down').length).toBeGreaterThanOrEqual(2); // the kill, the pause
    expect(changes.filter((c) => c === 'down').length).toBeLessThan(5); // (a loaded machine may add a timeout)
    changes.slice(1).forEach((c, i) => expect(c).toBe(i % 2 === 0 ? 'down' : 'up'));
  });
});
