// The limiter: a store, the over-limit cache in front of it, and the failure mode as a branch chosen once.
// Still no HTTP: the filter asks `check(key, now, rate)` and turns the Decision into headers and denies.
// Redis decisions are coalesced: the requests for one key that arrive in one turn of the event loop are
// decided by one command (gcra.ts GCRA_BATCH_LUA) with the answers one-by-one decisions would give, and
// the turn's batches go out in one write. A key shared by many requests (a route-wide limit, one busy
// client) then costs one Redis command per turn instead of one per request.
//   local  while Redis fails, count in process (its own limit, the `fallback` rate when given)
//   deny   while Redis fails, refuse (the filter answers 503 ratelimit_unavailable)
//   allow  while Redis fails, let every request through uncounted
import { MemoryStore, OverLimitCache } from './memory.ts';
import type { RedisStore } from './redis.ts';
import type { HitResult, Rate } from '../contract/rate-limit.ts';
import { batchResult } from './gcra.ts';

export type FailureMode = 'local' | 'deny' | 'allow';

/** Where a decision came from: the metric label. */
export type DecisionSource = 'memory' | 'redis' | 'cache' | 'local' | 'unavailable';

export interface Decision extends HitResult {
  source: DecisionSource;
  /** False when nobody counted (allow mode while Redis fails, deny mode's refusal): no RateLimit field. */
  counted: boolean;
}

const UNAVAILABLE_DENY: Decision = Object.freeze({ allowed: false, remaining: 0, resetMs: 1000, retryAfterMs: 1000, source: 'unavailable', counted: false });
const UNAVAILABLE_ALLOW: Decision = Object.freeze({ allowed: true, remaining: 0, resetMs: 0, retryAfterMs: 0, source: 'unavailable', counted: false });

function withSource(r: HitResult, source: DecisionSource): Decision {
  return { allowed: r.allowed, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs, source, counted: true };
}

/**
 * A cost-0 look turned into the answer to "would one more unit fit": it fits while at least one unit
 * remains; otherwise the wait is until the bucket drains by the one interval it lacks (GCRA: TAT + T - tau).
 */
function fromPeek(r: HitResult, rate: Rate, source: DecisionSource): Decision {
  if (r.remaining >= 1) return { allowed: true, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: 0, source, counted: true };
  const wait = Math.max(1, Math.ceil(r.resetMs + rate.intervalMs - rate.toleranceMs));
  return { allowed: false, remaining: 0, resetMs: r.resetMs, retryAfterMs: wait, source, counted: true };
}

export interface LimiterOptions {
  /** The shared store; null runs in process. */
  redis: RedisStore | null;
  mode: FailureMode;
  /** In-process rate used by `local` while Redis fails; null: each limit's own rate. */
  fallbackRate: Rate | null;
  maxLocalKeys: number;
}

/** Requests waiting for one key's decision in this turn of the event loop. */
interface Batch {
  readonly key: string;
  readonly rate: Rate;
  readonly waiters: ((d: Decision) => void)[];
}

export class Limiter {
  readonly redis: RedisStore | null;
  readonly mode: FailureMode;
  /** The development store when there is no Redis; the `local` fallback otherwise. */
  readonly memory: MemoryStore;
  readonly cache: OverLimitCache;
  readonly #fallbackRate: Rate | null;
  /** The failure branch, chosen once. */
  readonly unavailable: (key: string, now: number, rate: Rate) => Decision;
  #pending = new Map<string, Batch>();
  #flushScheduled = false;
  /** The failure branch of `peek`: the same modes, looking instead of counting under `local`. */
  readonly unavailablePeek: (key: string, now: number, rate: Rate) => Decision;

  constructor(o: LimiterOptions) {
    this.redis = o.redis;
    this.mode = o.mode;
    this.memory = new MemoryStore(o.maxLocalKeys);
    this.cache = new OverLimitCache(Math.max(1000, Math.floor(o.maxLocalKeys / 10)));
    this.#fallbackRate = o.fallbackRate;
    this.unavailable =
      o.mode === 'deny' ? () => UNAVAILABLE_DENY
      : o.mode === 'allow' ? () => UNAVAILABLE_ALLOW
      : (key, now, rate) => withSource(this.memory.hit(key, 1, now, this.#fallbackRate ?? rate), 'local');
    this.unavailablePeek =
      o.mode === 'deny' ? () => UNAVAILABLE_DENY
      : o.mode === 'allow' ? () => UNAVAILABLE_ALLOW
      : (key, now, rate) => {
          const r = this.#fallbackRate ?? rate;
          return fromPeek(this.memory.hit(key, 0, now, r), r, 'local');
        };
  }

  /** The fallback rate `local` applies, for headers while Redis fails. */
  localRate(rate: Rate): Rate {
    return this.#fallbackRate ?? rate;
  }

  /** Decides one request (cost 1) for `key`. Synchronous unless Redis is asked. */
  check(key: string, now: number, rate: Rate): Decision | Promise<Decision> {
    const redis = this.redis;
    if (redis === null) return withSource(this.memory.hit(key, 1, now, rate), 'memory');
    const cache = this.cache;
    const blocked = cache.blockedFor(key, now);
    // GCRA: a denied bucket is full until allowAt - T + tau, so the reset follows from the wait.
    if (blocked > 0) return { allowed: false, remaining: 0, resetMs: blocked + rate.toleranceMs - rate.intervalMs, retryAfterMs: blocked, source: 'cache', counted: true };
    if (!redis.available) return this.unavailable(key, now, rate);
    let batch = this.#pending.get(key);
    if (batch === undefined || batch.rate !== rate) {
      // A key is counted at one rate; should two differ, the later batch replaces the earlier in the
      // map, which still flushes from its own reference below.
      if (batch !== undefined) this.#orphans.push(batch);
      batch = { key, rate, waiters: [] };
      this.#pending.set(key, batch);
    }
    const b = batch;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // After this turn's I/O callbacks: every request read in this turn joins its key's batch.
      setImmediate(this.#flush);
    }
    return new Promise<Decision>((resolve) => b.waiters.push(resolve));
  }

  #orphans: Batch[] = [];

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const batches = [...this.#pending.values(), ...this.#orphans];
    this.#pending = new Map();
    this.#orphans = [];
    const redis = this.redis!;
    const replies = redis.hitBatches(batches.map((b) => ({ key: b.key, count: b.waiters.length, rate: b.rate })));
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i]!;
      replies[i]!.then(
        (r) => {
          const now = Date.now();
          if (r.allowed < b.waiters.length) this.cache.block(b.key, now + batchResult(r.allowed, r.allowed, r.offsetMs, b.rate).retryAfterMs);
          for (let j = 0; j < b.waiters.length; j++) b.waiters[j]!(withSource(batchResult(j, r.allowed, r.offsetMs, b.rate), 'redis'));
        },
        () => {
          for (const w of b.waiters) w(this.unavailable(b.key, Date.now(), b.rate));
        },
      );
    }
  };

  /**
   * Whether one more unit would fit in `key`'s bucket now, spending nothing (a GCRA look of cost 0): a
   * refusal limit asks this before a request is verified and spends (`check`) only when it was refused.
   * Denied: `retryAfterMs` is the wait until one unit fits. Same cache and failure modes as `check`.
   */
  peek(key: string, now: number, rate: Rate): Decision | Promise<Decision> {
    const redis = this.redis;
    if (redis === null) return fromPeek(this.memory.hit(key, 0, now, rate), rate, 'memory');
    const cache = this.cache;
    const blocked = cache.blockedFor(key, now);
    if (blocked > 0) return { allowed: false, remaining: 0, resetMs: blocked + rate.toleranceMs - rate.intervalMs, retryAfterMs: blocked, source: 'cache', counted: true };
    if (!redis.available) return this.unavailablePeek(key, now, rate);
    return redis.hit(key, 0, now, rate).then(
      (r) => {
        const d = fromPeek(r, rate, 'redis');
        if (!d.allowed) cache.block(key, now + d.retryAfterMs);
        return d;
      },
      () => this.unavailablePeek(key, Date.now(), rate),
    );
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.memory.close();
    await this.redis?.close();
  }
}
