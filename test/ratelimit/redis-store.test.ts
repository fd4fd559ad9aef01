// The Redis store against real servers: exactness under concurrency (shared Redis, unique prefix), and
// on a server of its own: SCRIPT FLUSH, CLIENT PAUSE beyond the command timeout, kill and restart.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, parseRedisUrl, type RedisTarget } from '../../src/ratelimit/redis.ts';
import { StoreUnavailableError, makeRate } from '../../src/contract/rate-limit.ts';
import { startRedis, sleep, waitFor, type OwnRedis } from '../helpers/redis-server.ts';

function store(url: string, events: string[] = [], commandTimeoutMs = 100) {
  return new RedisStore(parseRedisUrl(url) as RedisTarget, {
    connectTimeoutMs: 500,
    commandTimeoutMs,
    probeMs: 100,
    onStateChange: (up, reason) => events.push(`${up ? 'up' : 'down'}:${reason}`),
  });
}

function commandCalls(info: string, name: string): number {
  return Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

describe('shared Redis', () => {
  const s = store('redis://127.0.0.1:6379', [], 2000);
  const prefix = `test:rl:${randomUUID()}:`;
  beforeAll(() => s.ready());
  afterAll(() => s.close());

  it('is exact under 500 concurrent hits on one key', async () => {
    const rate = makeRate(100, 3_600_000);
    const results = await Promise.all(Array.from({ length: 500 }, () => s.hit(`${prefix}{one}`, 1, Date.now(), rate)));
    expect(results.filter((r) => r.allowed).length).toBe(100);
    const denied = results.find((r) => !r.allowed)!;
    expect(denied.remaining).toBe(0);
    expect(denied.retryAfterMs).toBeGreaterThan(30_000);
    expect(denied.retryAfterMs).toBeLessThanOrEqual(36_000);
  });

  it('keys expire when the bucket is full again', async () => {
    const key = `${prefix}{ttl}`;
    await s.hit(key, 1, Date.now(), makeRate(10, 1000));
    const pttl = Number(await s.client.pttl(key));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(100);
  });
});

describe('own Redis', () => {
  let redis: OwnRedis;
  const events: string[] = [];
  let s: RedisStore;
  const rate = makeRate(1000, 60_000);
  beforeAll(async () => {
    redis = await startRedis();
    s = store(redis.url, events);
    await s.ready();
  });
  afterAll(async () => {
    await s?.close();
    await redis?.stop();
  });

  it('runs the script by EVALSHA, and reloads it once after SCRIPT FLUSH', async () => {
    await s.hit('{a}', 1, Date.now(), rate);
    await redis.cli('config', 'resetstat');
    for (let i = 0; i < 5; i++) await s.hit('{a}', 1, Date.now(), rate);
    let info = await redis.cli('info', 'commandstats');
    expect(commandCalls(info, 'evalsha')).toBe(5);
    expect(commandCalls(info, 'eval')).toBe(0);
    await redis.cli('script', 'flush');
    await redis.cli('config', 'resetstat');
    const results = await Promise.all([1, 2, 3].map(() => s.hit('{a}', 1, Date.now(), rate)));
    expect(results.every((r) => r.allowed)).toBe(true);
    await s.hit('{a}', 1, Date.now(), rate);
    info = await redis.cli('info', 'commandstats');
    expect(commandCalls(info, 'eval')).toBeGreaterThanOrEqual(1);
    expect(commandCalls(info, 'eval')).toBeLessThanOrEqual(3);
    expect(s.available).toBe(true);
    // The next call is EVALSHA again, answered.
    const before = commandCalls(info, 'evalsha');
    await s.hit('{a}', 1, Date.now(), rate);
    expect(commandCalls(await redis.cli('info', 'commandstats'), 'evalsha')).toBe(before + 1);
  });

  it('does not fail a command Redis answered in time while this process was too busy to read it', async () => {
    events.length = 0;
    const pending = s.hit('{starved}', 1, Date.now(), rate); // written now; the command timeout is 100 ms
    const t = performance.now();
    while (performance.now() - t < 300); // the reply arrives meanwhile and waits in the socket, unread
    expect((await pending).allowed).toBe(true);
    expect(events).toEqual([]);
    expect(s.available).toBe(true);
  });

  it('fails within the command timeout while Redis is paused, and comes back by itself', async () => {
    events.length = 0;
    await redis.cli('client', 'pause', '800', 'ALL');
    const t0 = performance.now();
    await expect(s.hit('{b}', 1, Date.now(), rate)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(performance.now() - t0).toBeLessThan(400);
    expect(s.available).toBe(false);
    expect(events).toEqual(['down:timeout']);
    const pausedAt = Date.now();
    await waitFor(async () => s.available, 'store back up', 5_000);
    expect(Date.now() - pausedAt).toBeLessThan(800 + 1000);
    expect(events).toEqual(['down:timeout', 'up:answering again']);
    expect((await s.hit('{b}', 1, Date.now(), rate)).allowed).toBe(true);
  });

  it('fails fast while Redis is dead, and returns within a second of its restart', async () => {
    events.length = 0;
    await redis.kill();
    const t0 = performance.now();
    await expect(s.hit('{c}', 1, Date.now(), rate)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(performance.now() - t0).toBeLessThan(300);
    await sleep(500);
    expect(s.available).toBe(false);
    await redis.start();
    const started = Date.now();
    await waitFor(async () => s.available, 'store back up', 5_000);
    expect(Date.now() - started).toBeLessThan(1000);
    // A restarted Redis has no scripts: the NOSCRIPT path reloads it.
    expect((await s.hit('{c}', 1, Date.now(), rate)).allowed).toBe(true);
    expect(events[0]).toMatch(/^down:/);
    expect(events.at(-1)).toBe('up:answering again');
    expect(events.length).toBe(2);
  });
});
