// Prometheus metrics (prom-client). One registry per process; metric objects are created once and survive
// policy reloads, and request-path code uses children pre-bound to a route's labels.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Buckets for a proxy: most answers take well under 10 ms, upstream calls up to tens of seconds. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status_class'>;
  readonly requestDuration: Histogram<'route' | 'method' | 'status_class'>;
  readonly inflight: Gauge;
  readonly denies: Counter<'route' | 'filter' | 'reason'>;
  readonly upstreamDuration: Histogram<'upstream'>;
  readonly upstreamErrors: Counter<'upstream' | 'reason'>;
  readonly reloads: Counter<'result'>;
  readonly policyInfo: Gauge<'hash'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'portcullis_requests_total',
      help: 'Requests answered, by route name, method and status class.',
      labelNames: ['route', 'method', 'status_class'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Time from the request head to the end of the response, in seconds.',
      labelNames: ['route', 'method', 'status_class'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.inflight = new Gauge({ name: 'portcullis_requests_in_flight', help: 'Requests being handled.', registers });
    this.denies = new Counter({
      name: 'portcullis_denies_total',
      help: 'Requests the gateway answered itself, by route, filter and reason.',
      labelNames: ['route', 'filter', 'reason'],
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: 'portcullis_upstream_duration_seconds',
      help: 'Time until the upstream answered with its response head, in seconds.',
      labelNames: ['upstream'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'portcullis_upstream_errors_total',
      help: 'Upstream requests that failed, by upstream and reason.',
      labelNames: ['upstream', 'reason'],
      registers,
    });
    this.reloads = new Counter({
      name: 'portcullis_policy_reloads_total',
      help: 'Policy reloads by result (success, failure).',
      labelNames: ['result'],
      aggregator: 'max', // every worker reloads the same file: one reload, not N
      registers,
    });
    this.policyInfo = new Gauge({
      name: 'portcullis_policy_info',
      help: 'The loaded policy, by its SHA-256 hash (value 1).',
      labelNames: ['hash'],
      aggregator: 'max',
      registers,
    });
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Get-or-create a counter: filters declare theirs at compile time and reloads reuse them. */
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    const existing = this.registry.getSingleMetric(name);
    if (existing) return existing as Counter<L>;
    return new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
    const existing = this.registry.getSingleMetric(name);
    if (existing) return existing as Gauge<L>;
    return new Gauge({ name, help, labelNames: [...labelNames], registers: [this.registry] });
  }

  setPolicy(hash: string): void {
    this.policyInfo.reset();
    this.policyInfo.set({ hash }, 1);
  }
}
