// Targets of one upstream and how a request picks one: smooth weighted round robin (a schedule computed
// once), or least outstanding requests per weight. A target is available when it is not ejected by passive
// health and not marked down by the active check. Nothing here allocates per request.
import type { Dispatcher, Pool } from 'undici';

export type BalanceMode = 'round_robin' | 'least_request';

/** One backend instance: its pool and its health state. Mutated only by its Upstream. */
/** A request waiting for a free slot of its target; unlinked at once when its client goes away. */
export interface QueuedDispatch {
  options: Dispatcher.DispatchOptions;
  handler: Dispatcher.DispatchHandler;
  prev: QueuedDispatch | null;
  next: QueuedDispatch | null;
}

export class Target {
  readonly index: number;
  readonly url: URL;
  /** `http://host:port`, also the `target` metric label. */
  readonly origin: string;
  readonly weight: number;
  readonly pool: Pool;
  /** SNI name sent on dispatch (constant per target, so undici never churns connections over it). */
  readonly servername: string | undefined;
  /** Requests the pool can carry at once (connections x pipelining); more wait in `#queue`. */
  readonly capacity: number;
  /** Requests dispatched to this target and not yet ended (queued ones included). */
  inflight = 0;
  /** Requests handed to the pool and not yet ended. */
  #active = 0;
  #head: QueuedDispatch | null = null;
  #tail: QueuedDispatch | null = null;
  /** Consecutive failed requests (passive health). */
  failures = 0;
  /** Ejections in a row; the back-off doubles with each. Reset once a request succeeds after a return. */
  ejections = 0;
  ejected = false;
  /** False while the active health check counts the target down. */
  checkHealthy = true;
  /** `!ejected && checkHealthy`, kept as one field so `pick` reads one boolean. */
  available = true;
  ejectionTimer: NodeJS.Timeout | null = null;
  /** The last ejection (admin dashboard): why, when (epoch ms), for how long. Written on ejection only. */
  lastEjection: { reason: string; at: number; ms: number } | null = null;
  /** The active check's last change of verdict (admin dashboard), or null. */
  lastCheck: { healthy: boolean; detail: string; at: number } | null = null;

  constructor(index: number, url: URL, weight: number, pool: Pool, servername: string | undefined, capacity = Infinity) {
    this.index = index;
    this.url = url;
    this.origin = url.origin;
    this.weight = weight;
    this.pool = pool;
    this.servername = servername;
    this.capacity = capacity;
  }

  /**
   * Hands the request to the pool, or queues it here when every slot is taken. The queue is the
   * gateway's, not undici's: a request in undici's queue cannot be withdrawn (aborting it when its turn
   * comes destroys a connection), so a flood of cancelled requests (HTTP/2 stream resets) would each
   * cost a reconnect while live requests wait behind them. Returns the queue entry, or null if sent.
   */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): QueuedDispatch | null {
    this.inflight++;
    if (this.#active < this.capacity) {
      this.#active++;
      this.pool.dispatch(options, handler);
      return null;
    }
    const entry: QueuedDispatch = { options, handler, prev: this.#tail, next: null };
    if (this.#tail !== null) this.#tail.next = entry;
    else this.#head = entry;
    this.#tail = entry;
    return entry;
  }

  /** A request handed to the pool ended: the next queued one takes its slot. */
  ended(): void {
    this.inflight--;
    this.#active--;
    const next = this.#head;
    if (next === null) return;
    this.#unlink(next);
    this.#active++;
    this.pool.dispatch(next.options, next.handler);
  }

  /** A queued request's client went away before its turn: it leaves without touching the pool. */
  withdraw(entry: QueuedDispatch): void {
    this.inflight--;
    this.#unlink(entry);
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.inflight - this.#active;
  }

  #unlink(entry: QueuedDispatch): void {
    if (entry.prev !== null) entry.prev.next = entry.next;
    else this.#head = entry.next;
    if (entry.next !== null) entry.next.prev = entry.prev;
    else this.#tail = entry.prev;
    entry.prev = entry.next = null;
  }
}

/**
 * Smooth weighted round robin (as nginx): for weights 5,1,1 the order is a a b a c a a, never a burst of
 * five a's. Computed once at compile time; weights are reduced by their gcd so the schedule stays short.
 */
export function weightedSchedule(weights: readonly number[]): number[] {
  const g = weights.reduce((a, b) => gcd(a, b));
  const w = weights.map((x) => x / g);
  const total = w.reduce((a, b) => a + b, 0);
  const current = w.map(() => 0);
  const out: number[] = [];
  for (let n = 0; n < total; n++) {
    let best = 0;
    for (let i = 0; i < w.length; i++) {
      current[i]! += w[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out.push(best);
  }
  return out;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

export class Balancer {
  readonly targets: readonly Target[];
  readonly #schedule: Int32Array;
  readonly #leastRequest: boolean;
  #cursor = 0;

  constructor(targets: readonly Target[], mode: BalanceMode) {
    this.targets = targets;
    this.#schedule = Int32Array.from(weightedSchedule(targets.map((t) => t.weight)));
    this.#leastRequest = mode === 'least_request' && targets.length > 1;
  }

  /**
   * The next available target, or null when none is. `tried` is a bit set of target indexes already
   * used by this request (retries go elsewhere); 0 for a first attempt.
   */
  pick(tried: number): Target | null {
    const targets = this.targets;
    if (targets.length === 1) {
      const only = targets[0]!;
      return only.available && tried === 0 ? only : null;
    }
    if (this.#leastRequest) return this.#least(tried);
    const schedule = this.#schedule;
    const n = schedule.length;
    for (let i = 0; i < n; i++) {
      const c = this.#cursor;
      this.#cursor = c + 1 === n ? 0 : c + 1;
      const t = targets[schedule[c]!]!;
      if (t.available && (tried & (1 << t.index)) === 0) return t;
    }
    return null;
  }

  /** Fewest outstanding requests per unit of weight; ties go round the list so equal targets share. */
  #least(tried: number): Target | null {
    const targets = this.targets;
    const n = targets.length;
    const start = this.#cursor;
    this.#cursor = start + 1 === n ? 0 : start + 1;
    let best: Target | null = null;
    let bestScore = Infinity;
    for (let k = 0; k < n; k++) {
      const t = targets[(start + k) % n]!;
      if (!t.available || (tried & (1 << t.index)) !== 0) continue;
      const score = t.inflight / t.weight;
      if (score < bestScore) {
        best = t;
        bestScore = score;
      }
    }
    return best;
  }
}
