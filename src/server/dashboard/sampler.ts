// Live per-route statistics for the admin dashboard, read from the Prometheus registry the request path
// already writes: every `intervalMs` one reading of the request counter, the request-duration histogram,
// the deny counter and the rate-limit decision counter, kept in a ring of `keep` readings. Rates and
// quantiles are differences between two readings (as Prometheus' rate() and histogram_quantile()), so
// the request path does no extra work at all: the cost is one registry read per interval, on a timer.
import type { Registry } from 'prom-client';
import { DURATION_BUCKETS, METRIC_NAMES } from '../../observability/metrics.ts';

/** Cumulative totals of one route at one reading. */
interface RouteTotals {
  count: number;
  errors: number;
  /** Cumulative count per DURATION_BUCKETS bound, +Inf last. */
  buckets: number[];
}

export interface Reading {
  at: number;
  routes: Map<string, RouteTotals>;
  /** `route \0 filter \0 reason` → count. */
  denies: Map<string, number>;
  /** `route \0 limit` → limited decisions. */
  limited: Map<string, number>;
}

export interface RouteWindow {
  rps: number;
  error_rps: number;
  /** Share of answers that were 5xx, 0..1. */
  error_ratio: number;
  p50_ms: number | null;
  p99_ms: number | null;
  top_denies: { filter: string; reason: string; count: number }[];
}

export interface SeriesPoint {
  t: number;
  rps: number;
  error_rps: number;
  p99_ms: number | null;
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

async function values(registry: Registry, name: string): Promise<MetricValue[]> {
  const m = registry.getSingleMetric(name);
  if (m === undefined) return [];
  return (await m.get()).values as MetricValue[];
}

const BOUNDS = DURATION_BUCKETS.length;

/** One reading of the registry. */
export async function read(registry: Registry, at = Date.now()): Promise<Reading> {
  const routes = new Map<string, RouteTotals>();
  const totals = (route: string): RouteTotals => {
    let r = routes.get(route);
    if (r === undefined) routes.set(route, (r = { count: 0, errors: 0, buckets: new Array<number>(BOUNDS + 1).fill(0) }));
    return r;
  };
  for (const v of await values(registry, 'portcullis_requests_total')) {
    const r = totals(String(v.labels.route));
    r.count += v.value;
    if (v.labels.status_class === '5xx') r.errors += v.value;
  }
  for (const v of await values(registry, 'portcullis_request_duration_seconds')) {
    if (v.metricName !== 'portcullis_request_duration_seconds_bucket') continue;
    const le = v.labels.le;
    const i = le === '+Inf' ? BOUNDS : DURATION_BUCKETS.indexOf(Number(le));
    if (i === -1) continue;
    totals(String(v.labels.route)).buckets[i]! += v.value;
  }
  const denies = new Map<string, number>();
  for (const v of await values(registry, 'portcullis_denies_total')) {
    const key = `${v.labels.route}\0${v.labels.filter}\0${v.labels.reason}`;
    denies.set(key, (denies.get(key) ?? 0) + v.value);
  }
  const limited = new Map<string, number>();
  for (const v of await values(registry, METRIC_NAMES.rateLimitDecisions)) {
    if (v.labels.decision !== 'limited') continue;
    const key = `${v.labels.route}\0${v.labels.limit}`;
    limited.set(key, (limited.get(key) ?? 0) + v.value);
  }
  return { at, routes, denies, limited };
}

/** histogram_quantile over bucket increments: linear inside the bucket; the +Inf bucket gives the top bound. */
export function quantile(q: number, increments: readonly number[]): number | null {
  const total = increments[BOUNDS]!;
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < BOUNDS; i++) {
    if (increments[i]! >= rank) {
      const lower = i === 0 ? 0 : DURATION_BUCKETS[i - 1]!;
      const below = i === 0 ? 0 : increments[i - 1]!;
      const inBucket = increments[i]! - below;
      const upper = DURATION_BUCKETS[i]!;
      return inBucket > 0 ? lower + ((upper - lower) * (rank - below)) / inBucket : upper;
    }
  }
  return DURATION_BUCKETS[BOUNDS - 1]!;
}

const EMPTY: RouteTotals = { count: 0, errors: 0, buckets: new Array<number>(BOUNDS + 1).fill(0) };

function diff(now: RouteTotals | undefined, then: RouteTotals | undefined): RouteTotals {
  const a = now ?? EMPTY;
  const b = then ?? EMPTY;
  // A counter never goes down; if it did (a fresh registry), the new value is the increment.
  const d = (x: number, y: number) => (x >= y ? x - y : x);
  return { count: d(a.count, b.count), errors: d(a.errors, b.errors), buckets: a.buckets.map((v, i) => d(v, b.buckets[i]!)) };
}

const ms = (s: number | null) => (s === null ? null : Math.round(s * 100_000) / 100);

export class StatsSampler {
  readonly #registry: Registry;
  readonly #intervalMs: number;
  readonly #keep: number;
  readonly #ring: Reading[] = [];
  #timer: NodeJS.Timeout | null = null;
  #reading: Promise<void> | null = null;

  constructor(registry: Registry, options: { intervalMs?: number; keep?: number } = {}) {
    this.#registry = registry;
    this.#intervalMs = options.intervalMs ?? 5_000;
    this.#keep = options.keep ?? 180;
  }

  get intervalMs(): number {
    return this.#intervalMs;
  }

  start(): void {
    if (this.#timer !== null) return;
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Takes one reading into the ring (one at a time). */
  sample(): Promise<void> {
    this.#reading ??= read(this.#registry).then(
      (r) => {
        this.#ring.push(r);
        if (this.#ring.length > this.#keep) this.#ring.shift();
      },
      () => undefined,
    ).finally(() => {
      this.#reading = null;
    });
    return this.#reading;
  }

  /**
   * Per route: the window over the last `windowMs` (from the oldest reading inside it to a fresh one) and
   * the series of per-interval points; and the limits most often hit in the window.
   */
  async stats(windowMs = 5 * 60_000): Promise<{
    window_ms: number;
    interval_ms: number;
    routes: Record<string, RouteWindow & { series: SeriesPoint[] }>;
    limits_hit: { route: string; limit: string; count: number }[];
  }> {
    const now = await read(this.#registry);
    const ring = this.#ring;
    const base = ring.find((r) => r.at >= now.at - windowMs) ?? ring[0] ?? null;
    const seconds = base === null ? 0 : Math.max((now.at - base.at) / 1000, 0.001);
    const routes: Record<string, RouteWindow & { series: SeriesPoint[] }> = {};
    const readings = [...ring, now];
    for (const [name, totals] of now.routes) {
      const d = diff(totals, base?.routes.get(name));
      const denies: { filter: string; reason: string; count: number }[] = [];
      for (const [key, count] of now.denies) {
        const [route, filter, reason] = key.split('\0') as [string, string, string];
        if (route !== name) continue;
        const n = count - (base?.denies.get(key) ?? 0);
        if (n > 0) denies.push({ filter, reason, count: n });
      }
      denies.sort((a, b) => b.count - a.count);
      const series: SeriesPoint[] = [];
      for (let i = 1; i < readings.length; i++) {
        const a = readings[i - 1]!;
        const b = readings[i]!;
        const s = Math.max((b.at - a.at) / 1000, 0.001);
        const p = diff(b.routes.get(name), a.routes.get(name));
        series.push({ t: b.at, rps: p.count / s, error_rps: p.errors / s, p99_ms: ms(quantile(0.99, p.buckets)) });
      }
      routes[name] = {
        rps: base === null ? 0 : d.count / seconds,
        error_rps: base === null ? 0 : d.errors / seconds,
        error_ratio: d.count > 0 ? d.errors / d.count : 0,
        p50_ms: ms(quantile(0.5, d.buckets)),
        p99_ms: ms(quantile(0.99, d.buckets)),
        top_denies: denies.slice(0, 5),
        series,
      };
    }
    const limits: { route: string; limit: string; count: number }[] = [];
    for (const [key, count] of now.limited) {
      const n = count - (base?.limited.get(key) ?? 0);
      if (n <= 0) continue;
      const [route, limit] = key.split('\0') as [string, string];
      limits.push({ route, limit, count: n });
    }
    limits.sort((a, b) => b.count - a.count);
    return { window_ms: base === null ? 0 : now.at - base.at, interval_ms: this.#intervalMs, routes, limits_hit: limits.slice(0, 10) };
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
