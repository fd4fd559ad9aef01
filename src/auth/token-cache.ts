// A bounded LRU of verified tokens, keyed by the SHA-256 of the token (the token itself is never kept as a
// key). Entries expire at the token's `exp` at the latest; a hit costs one hash and one Map lookup.
import { hash } from 'node:crypto';

export function tokenKey(token: string): string {
  return hash('sha256', token, 'base64');
}

export class TokenCache<V> {
  readonly #max: number;
  readonly #entries = new Map<string, { value: V; expiresAt: number }>();

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The value for `key` when present and not expired at `nowMs`. */
  get(key: string, nowMs: number): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= nowMs) {
      this.#entries.delete(key);
      return undefined;
    }
    // Most recently used last: delete and re-insert keeps Map order as recency order.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: V, expiresAt: number): void {
    if (this.#max <= 0) return;
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(key, { value, expiresAt });
  }

  clear(): void {
    this.#entries.clear();
  }
}
