// GCRA arithmetic, the bounded in-process stores, and the store URL forms.
import { describe, expect, it } from 'vitest';
import { batchResult, gcra, gcraBatch } from '../../src/ratelimit/gcra.ts';
import { Limiter } from '../../src/ratelimit/limiter.ts';
import { BoundedMap, MemoryStore, OverLimitCache } from '../../src/ratelimit/memory.ts';
import { describeTarget, parseRedisUrl } from '../../src/ratelimit/redis.ts';
import { makeRate } from '../../src/contract/rate-limit.ts';

describe('GCRA', () => {
  it('lets exactly `burst` through at once, then one per window/limit', () => {
    const rate = makeRate(10, 1000); // T = 100ms, burst 10
    const store = new MemoryStore();
    const t0 = 1_700_000_000_000;
    const allowed = Array.from({ length: 25 }, () => store.hit('k', 1, t0, rate).allowed).filter(Boolean).length;
    expect(allowed).toBe(10);
    expect(store.hit('k', 1, t0 + 99, rate).allowed).toBe(false);
    expect(store.hit('k', 1, t0 + 100, rate).allowed).toBe(true);
    expect(store.hit('k', 1, t0 + 100, rate).allowed).toBe(false);
    // After a full window the bucket is full again.
    const later = t0 + 2000;
    expect(Array.from({ length: 12 }, () => store.hit('k', 1, later, rate).allowed).filter(Boolean).length).toBe(10);
  });

  it('reports remaining, reset and retry-after', () => {
    const rate = makeRate(60, 60_000); // one per second, burst 60
    let tat: number | undefined;
    const now = 1_000_000;
    let r = gcra(tat, now, 1, rate);
    expect(r).toMatchObject({ allowed: true, remaining: 59, resetMs: 1000, retryAfterMs: 0 });
    tat = now + 60_000; // bucket empty
    r = gcra(tat, now, 1, rate);
    expect(r).toMatchObject({ allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 1000 });
  });

  it('a burst smaller than the limit smooths traffic', () => {
    const rate = makeRate(100, 10_000, 5); // T = 100ms, 5 at once
    const store = new MemoryStore();
    expect(Array.from({ length: 10 }, () => store.hit('k', 1, 0, rate).allowed).filter(Boolean).length).toBe(5);
  });
});

describe('GCRA batches', () => {
  // A batch of k requests at one instant must answer each exactly as k one-by-one decisions would.
  const cases: [number, number, number][] = [
    [100, 60_000, 100], [10, 1000, 3], [1, 1000, 1], [3600, 3_600_000, 50], [7, 700, 7],
  ];
  for (const [limit, windowMs, burst] of cases) {
    it(`matches one-by-one decisions: ${limit}/${windowMs} ms, burst ${burst}`, () => {
      const rate = makeRate(limit, windowMs, burst);
      for (const startOffset of [undefined, -5000, 0, rate.intervalMs / 2, rate.toleranceMs - rate.intervalMs, rate.toleranceMs, rate.toleranceMs * 2]) {
        for (const count of [1, 2, burst, burst + 1, burst * 3 + 2]) {
          const now = 1_000_000;
          const stored = startOffset === undefined ? undefined : now + startOffset;
          let tat = stored;
          const oneByOne = Array.from({ length: count }, () => {
            const r = gcra(tat, now, 1, rate);
            tat = r.tat;
            return { allowed: r.allowed, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs };
          });
          const batch = gcraBatch(stored, now, count, rate);
          const batched = Array.from({ length: count }, (_, i) => batchResult(i, batch.allowed, batch.offsetMs, rate));
          expect(batched).toEqual(oneByOne);
          expect(batch.tat).toBeCloseTo(tat ?? now, 6);
        }
      }
    });
  }
});

describe('refusal budgets: peek before, spend after', () => {
  it('a peek spends nothing and says no exactly when one more unit would not fit, with the wait until it does', () => {
    const limiter = new Limiter({ redis: null, mode: 'local', fallbackRate: null, maxLocalKeys: 1000 });
    const rate = makeRate(3, 3000); // T = 1s, burst 3
    const t0 = 1_700_000_000_000;
    for (let i = 0; i < 10; i++) expect(limiter.peek('k', t0, rate)).toMatchObject({ allowed: true, remaining: 3 });
    expect(limiter.memory.size).toBe(0); // looking creates no bucket
    for (let i = 0; i < 3; i++) expect(limiter.check('k', t0, rate)).toMatchObject({ allowed: true });
    expect(limiter.peek('k', t0, rate)).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1000 });
    expect(limiter.peek('k', t0 + 999, rate)).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(limiter.peek('k', t0 + 1000, rate)).toMatchObject({ allowed: true, remaining: 1 });
    // The peek left the bucket as it was: the one unit that drained is still there to spend.
    expect(limiter.check('k', t0 + 1000, rate)).toMatchObject({ allowed: true, remaining: 0 });
    expect(limiter.check('k', t0 + 1000, rate)).toMatchObject({ allowed: false });
  });
});

describe('bounded stores', () => {
  it('keep a fixed number of keys whatever the number of distinct clients', () => {
    const store = new MemoryStore(1000);
    const rate = makeRate(1, 60_000);
    for (let i = 0; i < 50_000; i++) store.hit(`k${i}`, 1, 0, rate);
    expect(store.size).toBe(1000);
    const m = new BoundedMap<number>(3);
    for (const k of ['a', 'b', 'c']) m.set(k, 1);
    m.set('a', 2); // refreshed: now the newest
    m.set('d', 1); // evicts b, the least recently set
    expect(m.get('b')).toBeUndefined();
    expect(m.get('a')).toBe(2);
  });

  it('the over-limit cache forgets a key once its wait is over', () => {
    const c = new OverLimitCache(1000);
    c.block('k', 1500);
    expect(c.blockedFor('k', 1000)).toBe(500);
    expect(c.blockedFor('k', 1500)).toBe(0);
    expect(c.size).toBe(0);
  });
});

describe('store URLs', () => {
  it.each([
    ['redis://127.0.0.1:6379', { kind: 'single', host: '127.0.0.1', port: 6379, db: 0, tls: false }],
    ['rediss://:s3cret@cache.internal:6380/2', { kind: 'single', host: 'cache.internal', port: 6380, db: 2, tls: true, password: 's3cret' }],
    ['redis://app:pw@h', { kind: 'single', host: 'h', port: 6379, username: 'app', password: 'pw' }],
    ['redis+sentinel://:pw@s1:26379,s2/mymaster/1?sentinel_password=sp', { kind: 'sentinel', name: 'mymaster', db: 1, password: 'pw', sentinelPassword: 'sp', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }] }],
    ['redis+cluster://n1:7000,n2:7001,[::1]:7002', { kind: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }, { host: '::1', port: 7002 }] }],
  ])('%s', (url, expected) => {
    expect(parseRedisUrl(url)).toMatchObject(expected);
  });

  it.each(['http://h:6379', 'redis://a:1,b:2', 'redis+sentinel://s1:26379', 'redis+cluster://n1/3', 'redis://h/x'])('refuses %s', (url) => {
    expect(typeof parseRedisUrl(url)).toBe('string');
  });

  it('never shows the password', () => {
    const t = parseRedisUrl('rediss://:hunter22@h:6380');
    expect(typeof t).not.toBe('string');
    expect(describeTarget(t as Exclude<typeof t, string>)).toBe('rediss://:********@h:6380/0');
  });
});
