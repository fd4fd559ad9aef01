// In-process stores, bounded whatever the number of distinct keys: a flood of spoofed addresses or random
// tokens evicts the least recently used buckets instead of growing the heap. Evicting a live bucket
// forgets that client's count (it starts afresh): the price of a fixed memory ceiling.
import { gcra } from './gcra.ts';
import type { HitResult, Rate, RateLimitStore } from '../contract/rate-limit.ts';

/** A Map used as an LRU: re-inserting moves a key to the end; the first key is the oldest. */
export class BoundedMap<V> {
  readonly #map = new Map<string, V>();
  readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  get size(): number {
    return this.#map.size;
  }
  get(key: string): V | undefined {
    return this.#map.get(key);
  }
  set(key: string, value: V): void {
    const map = this.#map;
    if (map.has(key)) map.delete(key);
    else if (map.size >= this.max) map.delete(map.keys().next().value!);
    map.set(key, value);
  }
  delete(key: string): void {
    this.#map.delete(key);
  }
  clear(): void {
    this.#map.clear();
  }
}

/** GCRA buckets in process: the development store, and the `local` fallback while Redis fails. */
export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const;
  readonly #tats: BoundedMap<number>;
  constructor(maxKeys = 100_000) {
    this.#tats = new BoundedMap(maxKeys);
  }
  get size(): number {
    return this.#tats.size;
  }
  hit(key: string, cost: number, now: number, rate: Rate): HitResult {
    const tats = this.#tats;
    const stored = tats.get(key);
    const r = gcra(stored, now, cost, rate);
    if (r.allowed) {
      if (cost > 0) tats.set(key, r.tat); // cost 0 only looks (refusal limits): no bucket for it
    }
    else if (stored === undefined) tats.delete(key);
    return r;
  }
  async close(): Promise<void> {
    this.#tats.clear();
  }
}

/**
 * Keys known to be over their limit, until the moment they would be allowed again. Consulted before the
 * store so that a flood from one abuser is refused without a Redis round trip. Bounded like the buckets.
 */
export class OverLimitCache {
  readonly #until: BoundedMap<number>;
  constructor(maxKeys = 10_000) {
    this.#until = new BoundedMap(maxKeys);
  }
  get size(): number {
    return this.#until.size;
  }
  /** Milliseconds until `key` may be allowed, or 0 when it is not known to be over. */
  blockedFor(key: string, now: number): number {
    const until = this.#until.get(key);
    if (until === undefined) return 0;
    if (until <= now) {
      this.#until.delete(key);
      return 0;
    }
    return until - now;
  }
  block(key: string, until: number): void {
    this.#until.set(key, until);
  }
  clear(): void {
    this.#until.clear();
  }
}
