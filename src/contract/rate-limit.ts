// The rate-limit store contract. Stores know no HTTP: a key (already built and prefixed by the filter), a
// cost, the time, and the rate it is counted against. The filter owns keys, the 429 and the headers.

/** A limit as the algorithm sees it, computed once at compile time. */
export interface Rate {
  /** Requests per window (the `q` of RateLimit-Policy). */
  readonly limit: number;
  readonly windowMs: number;
  /** Requests that may arrive at once, from an idle bucket. */
  readonly burst: number;
  /** GCRA emission interval: one request's worth of time, windowMs / limit. */
  readonly intervalMs: number;
  /** GCRA delay tolerance: burst * intervalMs. */
  readonly toleranceMs: number;
}

export function makeRate(limit: number, windowMs: number, burst: number = limit): Rate {
  const intervalMs = windowMs / limit;
  return Object.freeze({ limit, windowMs, burst, intervalMs, toleranceMs: burst * intervalMs });
}

/** One decision. Times are milliseconds from now. */
export interface HitResult {
  allowed: boolean;
  /** Requests still allowed right now (after this one when allowed). */
  remaining: number;
  /** Until the bucket is full again (RateLimit `t`). */
  resetMs: number;
  /** Until this request would have been allowed; 0 when allowed. */
  retryAfterMs: number;
}

export interface RateLimitStore {
  /** 'memory' or 'redis': the metric label and the log name. */
  readonly kind: 'memory' | 'redis';
  /**
   * Counts `cost` against `key` at `now` (epoch ms). The memory store answers synchronously; the Redis
   * store answers with a promise that rejects with StoreUnavailableError, never hangs past its timeout.
   */
  hit(key: string, cost: number, now: number, rate: Rate): HitResult | Promise<HitResult>;
  close(): Promise<void>;
}

/** Thrown (rejected) by a store that could not decide: connection down, timeout, script error. */
export class StoreUnavailableError extends Error {
  readonly code = 'RATELIMIT_STORE_UNAVAILABLE';
  override readonly cause: unknown;
  constructor(message: string, cause?: unknown) {
    super(message);
    this.name = 'StoreUnavailableError';
    this.cause = cause;
  }
}
