// Prometheus metrics (prom-client). One registry per process; metric objects are created once and survive
// policy reloads, and request-path code uses children pre-bound to a route's labels (see RouteMetrics).
//
// Naming (checked by `counter()`, `gauge()`, `histogram()`): `portcullis_` prefix, snake_case, base units
// (`_seconds`, `_bytes`), counters end in `_total`, label values bounded (route, upstream and provider
// names from the policy, reasons declared by the filter modules; never raw paths, tokens or client input).
// Metric names the protections use are listed in METRIC_NAMES below and in docs/observability.md.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { MetricsRegistry } from '../contract/telemetry.ts';

/** Buckets for a proxy: most answers take well under 10 ms, upstream calls up to tens of seconds. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The names the protections create through `env.telemetry.metrics.counter(...)`, so dashboards, alerts and
 * filters agree. Labels are listed with each; values are bounded (policy names, declared outcomes).
 */
export const METRIC_NAMES = {
  /** counter {route, limit, decision="allowed"|"limited"|"report", source="redis"|"cache"|"memory"|"local"|"unavailable"} */
  rateLimitDecisions: 'portcullis_rate_limit_decisions_total',
  /** counter {route, limit}: identity refusals (401/403 of auth or authorize) spent against `count: refused` limits */
  rateLimitRefusals: 'portcullis_rate_limit_refusals_total',
  /** counter {store, fallback="local"|"deny"|"allow", reason}: Redis errors and the failure mode applied */
  rateLimitStoreErrors: 'portcullis_rate_limit_store_errors_total',
  /** counter {provider, result="hit"|"miss"}: verified-token cache lookups */
  tokenCache: 'portcullis_token_cache_lookups_total',
  /** counter {provider, result="success"|"failure"}: JWKS fetches (first and refresh) */
  jwksRefreshes: 'portcullis_jwks_refreshes_total',
  /** counter {provider, result="allowed"|"denied"|"error"}: external auth service calls */
  forwardAuth: 'portcullis_forward_auth_requests_total',
  /** histogram {provider}: external auth service call time */
  forwardAuthDuration: 'portcullis_forward_auth_duration_seconds',
} as const;

const NAME = /^portcullis_[a-z][a-z0-9_]*[a-z0-9]$/;
const LABEL = /^[a-z_][a-z0-9_]*$/;
const RESERVED_LABELS = new Set(['le', 'quantile']);

/** Throws on names that break the conventions: a programming error, caught by the filter's own tests. */
export function checkMetricName(kind: 'counter' | 'gauge' | 'histogram', name: string, labelNames: readonly string[]): void {
  if (!NAME.test(name)) throw new TypeError(`metric "${name}": names are portcullis_ + snake_case`);
  if (kind === 'counter' && !name.endsWith('_total')) throw new TypeError(`counter "${name}" must end in _total`);
  if (kind !== 'counter' && name.endsWith('_total')) throw new TypeError(`${kind} "${name}" must not end in _total (counters only)`);
  if (/_(ms|milliseconds|kb|mb)(_|$)/.test(name)) throw new TypeError(`metric "${name}": use base units (_seconds, _bytes)`);
  for (const l of labelNames) {
    if (!LABEL.test(l) || l.startsWith('__') || RESERVED_LABELS.has(l)) throw new TypeError(`metric "${name}": invalid label name "${l}"`);
  }
}

/** Methods with a label value of their own (the OpenTelemetry HTTP set); any other is `_OTHER`. */
const KNOWN_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
const METHOD_INDEX: Record<string, number> = Object.assign(Object.create(null) as Record<string, number>, Object.fromEntries(KNOWN_METHODS.map((m, i) => [m, i])));
const METHOD_LABELS = [...KNOWN_METHODS, '_OTHER'];
const OTHER_METHOD = KNOWN_METHODS.length;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** The bounded `method` label of a request method. */
export function methodLabel(method: string): string {
  return METHOD_LABELS[METHOD_INDEX[method] ?? OTHER_METHOD]!;
}

export function statusClass(status: number): string {
  return STATUS_CLASSES[Math.floor(status / 100) - 1] ?? 'other';
}

interface BoundRequest {
  count: { inc(): void };
  duration: { observe(v: number): void };
}

/**
 * Children of the request counter and duration histogram pre-bound to one route name, one per method and
 * status class, created on first use: the hot path indexes two arrays and never builds a label object.
 */
export class RouteMetrics {
  readonly #metrics: Metrics;
  readonly route: string;
  readonly #bound: (BoundRequest | undefined)[] = [];

  constructor(metrics: Metrics, route: string) {
    this.#metrics = metrics;
    this.route = route;
  }

  observe(method: string, status: number, seconds: number): void {
    const m = METHOD_INDEX[method] ?? OTHER_METHOD;
    let s = Math.floor(status / 100) - 1;
    if (s < 0 || s > 4) s = 5;
    const slot = m * 6 + s;
    let b = this.#bound[slot];
    if (b === undefined) {
      const labels = { route: this.route, method: METHOD_LABELS[m]!, status_class: STATUS_CLASSES[s] ?? 'other' };
      b = { count: this.#metrics.requests.labels(labels), duration: this.#metrics.requestDuration.labels(labels) };
      this.#bound[slot] = b;
    }
    b.count.inc();
    b.duration.observe(seconds);
  }
}

export class Metrics implements MetricsRegistry {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status_class'>;
  readonly requestDuration: Histogram<'route' | 'method' | 'status_class'>;
  readonly inflight: Gauge;
  readonly denies: Counter<'route' | 'filter' | 'reason'>;
  readonly reportedDenies: Counter<'route' | 'filter' | 'reason'>;
  readonly upstreamDuration: Histogram<'upstream'>;
  readonly upstreamErrors: Counter<'upstream' | 'reason'>;
  readonly reloads: Counter<'result'>;
  readonly policyInfo: Gauge<'hash'>;
  readonly auditEvents: Counter<'action' | 'outcome'>;
  readonly logDropped: Counter<'log'>;
  readonly idleReleases: Counter;
  readonly idleReleasedBytes: Counter;
  readonly idleReleasePause: Counter;
  readonly #routes = new Map<string, RouteMetrics>();
  readonly #upstreams = new Map<string, { observe(v: number): void }>();

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
      help: 'Time from the request head to the end of the response, in seconds (OpenTelemetry http.server.request.duration).',
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
    this.reportedDenies = new Counter({
      name: 'portcullis_reported_denies_total',
      help: 'Requests a filter in report mode would have refused and let through, by route, filter and reason.',
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
    this.auditEvents = new Counter({
      name: 'portcullis_audit_events_total',
      help: 'Audit log lines written, by action and outcome.',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.logDropped = new Counter({
      name: 'portcullis_log_lines_dropped_total',
      help: 'Log lines dropped because the log destination could not keep up, by log.',
      labelNames: ['log'],
      registers,
    });
    this.idleReleases = new Counter({
      name: 'portcullis_idle_memory_releases_total',
      help: 'Compacting collections run while the gateway was idle (limits.release_memory).',
      registers,
    });
    this.idleReleasedBytes = new Counter({
      name: 'portcullis_idle_memory_released_bytes_total',
      help: 'Heap and external memory those collections freed, in bytes.',
      registers,
    });
    this.idleReleasePause = new Counter({
      name: 'portcullis_idle_memory_release_pause_seconds_total',
      help: 'Time the process was paused by those collections, in seconds.',
      registers,
    });
    if (options.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client also names three gauges *_total, which Prometheus reserves for counters (promtool check
      // metrics says so); the values stay available by type as nodejs_active_requests, _resources and _handles.
      this.registry.removeSingleMetric('nodejs_active_requests_total');
      this.registry.removeSingleMetric('nodejs_active_resources_total');
      this.registry.removeSingleMetric('nodejs_active_handles_total');
    }
  }

  /** Pre-bound request metrics of a route name (stable across reloads). */
  route(name: string): RouteMetrics {
    let r = this.#routes.get(name);
    if (r === undefined) {
      r = new RouteMetrics(this, name);
      this.#routes.set(name, r);
    }
    return r;
  }

  /** Pre-bound upstream duration child. */
  upstream(name: string): { observe(v: number): void } {
    let u = this.#upstreams.get(name);
    if (u === undefined) {
      u = this.upstreamDuration.labels({ upstream: name });
      this.#upstreams.set(name, u);
    }
    return u;
  }

  #existing(kind: string, name: string, labelNames: readonly string[], type: Function): unknown {
    const existing = this.registry.getSingleMetric(name);
    if (existing === undefined) return undefined;
    if (!(existing instanceof type)) throw new TypeError(`metric "${name}" already exists and is not a ${kind}`);
    const known = (existing as unknown as { labelNames: string[] }).labelNames ?? [];
    if (known.length !== labelNames.length || labelNames.some((l) => !known.includes(l))) {
      throw new TypeError(`metric "${name}" already exists with labels [${known.join(', ')}]`);
    }
    return existing;
  }

  /**
   * Get-or-create a counter: filters declare theirs at compile time (reloads reuse them) and keep the
   * pre-bound children, e.g. `const hit = metrics.counter(METRIC_NAMES.tokenCache, '...', ['provider',
   * 'result']).labels({ provider, result: 'hit' })`.
   */
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    checkMetricName('counter', name, labelNames);
    const existing = this.#existing('counter', name, labelNames, Counter);
    if (existing) return existing as Counter<L>;
    return new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], aggregator: 'sum' | 'max' | 'min' | 'average' = 'sum'): Gauge<L> {
    checkMetricName('gauge', name, labelNames);
    const existing = this.#existing('gauge', name, labelNames, Gauge);
    if (existing) return existing as Gauge<L>;
    return new Gauge({ name, help, labelNames: [...labelNames], aggregator, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[] = DURATION_BUCKETS): Histogram<L> {
    checkMetricName('histogram', name, labelNames);
    const existing = this.#existing('histogram', name, labelNames, Histogram);
    if (existing) return existing as Histogram<L>;
    return new Histogram({ name, help, labelNames: [...labelNames], buckets, registers: [this.registry] });
  }

  setPolicy(hash: string): void {
    this.policyInfo.reset();
    this.policyInfo.set({ hash }, 1);
  }
}
