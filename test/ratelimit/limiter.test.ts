// The limiter in front of a real Redis of its own: requests for one key in one turn of the event loop
// are decided by one command with one-by-one answers; a turn's keys go out in one pipeline; a failed
// batch answers every waiter from the failure mode.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Limiter, type Decision } from '../../src/ratelimit/limiter.ts';
import { RedisStore, parseRedisUrl, type RedisTarget } from '../../src/ratelimit/redis.ts';
import { makeRate } from '../../src/contract/rate-limit.ts';
import { startRedis, type OwnRedis } from '../helpers/redis-server.ts';

function commandCalls(info: string, name: string): number {
  return Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

describe('Limiter on Redis', () => {
  let redis: OwnRedis;
  let store: RedisStore;
  let limiter: Limiter;
  beforeAll(async () => {
    redis = await startRedis();
    store = new RedisStore(parseRedisUrl(redis.url) as RedisTarget, { connectTimeoutMs: 500, commandTimeoutMs: 2000, probeMs: 100 });
    await store.ready();
    limiter = new Limiter({ redis: store, mode: 'local', fallbackRate: null, maxLocalKeys: 1000 });
  });
  afterAll(async () => {
    await limiter?.close();
    await redis?.stop();
  });

  it('decides 300 simultaneous requests for one key in one command, exactly, with one-by-one answers', async () => {
    const rate = makeRate(100, 3_600_000);
    await redis.cli('config', 'resetstat');
    const now = Date.now();
    const decisions = await Promise.all(Array.from({ length: 300 }, () => limiter.check('{one}', now, rate) as Promise<Decision>));
    const allowed = decisions.filter((d) => d.allowed);
    expect(allowed.length).toBe(100);
    // The first 100 pass, each with the remaining count it would have had alone: 99, 98, ... 0.
    expect(decisions.slice(0, 100).every((d) => d.allowed)).toBe(true);
    expect(allowed.map((d) => d.remaining)).toEqual(Array.from({ length: 100 }, (_, i) => 99 - i));
    const denied = decisions.filter((d) => !d.allowed);
    expect(new Set(denied.map((d) => d.source))).toEqual(new Set(['redis']));
    expect(denied[0]!.retryAfterMs).toBeGreaterThan(30_000);
    expect(denied[0]!.retryAfterMs).toBeLessThanOrEqual(36_000);
    const info = await redis.cli('info', 'commandstats');
    expect(commandCalls(info, 'evalsha')).toBe(1);
    // The over-limit cache now answers this key without Redis.
    const next = await limiter.check('{one}', Date.now(), rate);
    expect(next.allowed).toBe(false);
    expect(next.source).toBe('cache');
  });

  it('sends the keys of one turn in one pipeline and counts each on its own', async () => {
    const rate = makeRate(2, 3_600_000);
    await redis.cli('config', 'resetstat');
    const now = Date.now();
    const keys = Array.from({ length: 40 }, (_, i) => `{k${i}}`);
    // Three requests per key: two pass, the third is refused, whatever the key.
    const decisions = await Promise.all(keys.flatMap((k) => [0, 1, 2].map(() => limiter.check(k, now, rate) as Promise<Decision>)));
    for (let i = 0; i < keys.length; i++) expect(decisions.slice(i * 3, i * 3 + 3).map((d) => d.allowed)).toEqual([true, true, false]);
    expect(commandCalls(await redis.cli('info', 'commandstats'), 'evalsha')).toBe(40);
    // The next turn counts on from the stored buckets: a refused key stays refused.
    const again = await limiter.check('{k1}', Date.now(), rate);
    expect(again.allowed).toBe(false);
  });

  it('answers every waiter of a failed batch from the failure mode (local)', async () => {
    const rate = makeRate(5, 3_600_000);
    await redis.stop();
    const now = Date.now();
    const decisions = await Promise.all(Array.from({ length: 8 }, () => limiter.check('{down}', now, rate)));
    // Counted in process at the limit's own rate: the first 5 pass.
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false, false]);
    expect(new Set(decisions.map((d) => d.source))).toEqual(new Set(['local']));
  });
});
