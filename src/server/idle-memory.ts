// Gives memory back to the operating system while the gateway is quiet.
//
// V8 keeps the pages its heap grew to: a regular major GC frees the objects but leaves the pages committed,
// so a gateway stays at its peak RSS. A "last-resort" GC compacts the heap and releases its free pages, at
// the price of a stop-the-world pause of 20-80 ms, and it throws away the JIT's work (compiled code and
// its feedback). Measured on a passthrough at 2,000 req/s, 4 s open-loop runs after 3 s quiet: p99
// 2.9-17.7 ms with a release before each run, 1.6-3.5 ms without (6 runs each; with the bench's older
// generator 51-83 against 1.7-3.8 ms, and a regular forced major GC no better). So by default (`startup`) it runs once, in the first
// quiet second after start and only if no request has come yet: compiling the policy leaves about 17 MiB
// of garbage and nothing is warm to lose (a fresh passthrough gateway: 84 → 75 MiB RSS). `when_idle` also
// runs it whenever no request has started for QUIET_MS after the heap grew by GROWTH_BYTES: memory back
// after each load, paid for by a slower first second of the next one. `off` never runs it.
//
// `limits.release_memory` is read at every check, so a reload applies it.
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How long no request may have started before the process counts as idle. */
export const QUIET_MS = 1_000;
/** Heap + external memory growth since the last release that makes another one worth its pause. */
export const GROWTH_BYTES = 4 * 1024 * 1024;
/** How often the counters are looked at: a release comes QUIET_MS to QUIET_MS + CHECK_MS after the last request. */
export const CHECK_MS = 250;

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

let exposedGc: GcFunction | null = null;
/**
 * V8's gc() without `--expose-gc` on the command line (which would put `gc` on every global object): the
 * flag is set only long enough for a fresh context to pick the function up, then cleared again.
 */
function compactingGc(): GcFunction {
  if (exposedGc === null) {
    v8.setFlagsFromString('--expose-gc');
    try {
      exposedGc = runInNewContext('gc') as GcFunction;
    } finally {
      v8.setFlagsFromString('--no-expose-gc');
    }
  }
  return exposedGc;
}

/** Committed V8 heap plus memory held by Buffers and other external allocations, in bytes. */
export function heapFootprint(): number {
  const s = v8.getHeapStatistics();
  return s.total_heap_size + s.external_memory;
}

export interface Release {
  /** Footprint before and after the collection, in bytes. */
  before: number;
  after: number;
  pauseMs: number;
}

export type ReleaseMode = 'startup' | 'when_idle' | 'off';

export interface IdleMemoryOptions {
  /** Requests started so far (any monotonic counter of activity). */
  started: () => number;
  /** When to release; read at every check. */
  mode: () => ReleaseMode;
  onRelease?: (release: Release) => void;
  /** For tests: the clock, the footprint reading and the collection. */
  now?: () => number;
  footprint?: () => number;
  collect?: () => void;
}

/** The decision, apart from the timer: call `check()` periodically. */
export class IdleMemoryRelease {
  readonly #o: IdleMemoryOptions;
  readonly #now: () => number;
  readonly #footprint: () => number;
  readonly #collect: () => void;
  #seen: number;
  #quietSince: number;
  /** Footprint right after the last release; 0 until the first, so the first quiet window releases. */
  #base = 0;
  /** The start-up release is past: made, or a request came first. */
  #startupOver = false;
  /** One release per quiet period: set after a release (or a check that found no growth), cleared by activity. */
  #done = false;

  constructor(options: IdleMemoryOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#footprint = options.footprint ?? heapFootprint;
    this.#collect = options.collect ?? (() => compactingGc()({ type: 'major', execution: 'sync', flavor: 'last-resort' }));
    this.#seen = 0;
    this.#quietSince = this.#now();
  }

  /** Looks at the activity counter; collects when the process has been quiet long enough. Returns the release made, if any. */
  check(): Release | null {
    const now = this.#now();
    const started = this.#o.started();
    if (started !== this.#seen) {
      this.#seen = started;
      this.#quietSince = now;
      this.#done = false;
      this.#startupOver = true;
      return null;
    }
    const mode = this.#o.mode();
    if (this.#done || now - this.#quietSince < QUIET_MS || mode === 'off' || (mode === 'startup' && this.#startupOver)) return null;
    this.#done = true;
    this.#startupOver = true;
    const before = this.#footprint();
    if (before - this.#base < GROWTH_BYTES) return null;
    const t0 = performance.now();
    this.#collect();
    const pauseMs = performance.now() - t0;
    const after = this.#footprint();
    this.#base = after;
    const release = { before, after, pauseMs };
    this.#o.onRelease?.(release);
    return release;
  }
}

/** Starts checking every CHECK_MS on an unref'd timer (it never keeps the process alive); returns the stopper. */
export function startIdleMemoryRelease(options: IdleMemoryOptions): () => void {
  const release = new IdleMemoryRelease(options);
  const timer = setInterval(() => release.check(), CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
