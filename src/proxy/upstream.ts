// An upstream service: its settings, its targets (one undici Pool each), how requests are balanced over
// them, their passive and active health, the retry budget, and TLS/HTTP/2 to the targets. The forwarding
// engine (forwarder.ts) talks to it through `pick` / `Target.dispatch` and the outcome calls only.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Gauge, type Counter } from 'prom-client';
import type * as Undici from 'undici';
import { buildConnector, Pool } from './undici.ts';
import {
  array, boolean, duration, either, integer, object, oneOf, optional, string, url, withDefault,
  type Infer, type Path,
} from '../config/schema.ts';
import type { CompileEnv } from '../contract/filter.ts';
import type { MetricsRegistry, Telemetry } from '../contract/telemetry.ts';
import { Balancer, Target, type BalanceMode } from './balancer.ts';
import { ActiveHealthChecker } from './health.ts';

const PROTOCOLS = ['http:', 'https:'] as const;
/** Targets are tracked in a 31-bit set per request (which ones a retry must avoid). */
const MAX_TARGETS = 31;

const targetObjectSchema = object({
  url: url({ protocols: PROTOCOLS, description: 'Base URL of this instance; its path is not prepended.' }),
  weight: withDefault(integer({ min: 1, max: 100, description: 'Share of requests relative to the other targets.' }), 1),
  max_connections: optional(integer({ min: 1, description: 'Connections to this target (overrides the upstream\'s max_connections).' })),
});

const targetSchema = either(
  url({ protocols: PROTOCOLS, description: 'Base URL of this instance.' }),
  targetObjectSchema,
  { description: 'A URL, or { url, weight, max_connections }.' },
);

const tlsSchema = object(
  {
    ca: optional(string({ description: 'PEM file of the CA bundle that signs the upstream certificates (default: the system CAs).' })),
    servername: optional(string({ pattern: /^[A-Za-z0-9.-]+$/, patternName: 'host name', description: 'SNI name sent, and the name the certificate must carry (default: the target\'s host name).' })),
    cert: optional(string({ description: 'PEM file of the client certificate, for mTLS to the upstream.' })),
    key: optional(string({ description: 'PEM file of the client certificate\'s private key.' })),
    verify: withDefault(boolean({ description: 'Verify the upstream certificate; `false` is refused in production mode.' }), true),
  },
  {
    description: 'TLS to https targets.',
    check(t, path, issues) {
      if ((t.cert === undefined) !== (t.key === undefined)) issues.push({ path, message: 'give both "cert" and "key" for a client certificate, or neither' });
    },
  },
);

const activeCheckSchema = object({
  path: withDefault(string({ pattern: /^\/[^\s#]*$/, patternName: 'absolute path', description: 'Path requested with GET.' }), '/'),
  interval: withDefault(duration({ min: 100, description: 'Time between checks of each target.' }), 5_000),
  timeout: withDefault(duration({ min: 1, description: 'Time a check may take.' }), 2_000),
  expected_status: withDefault(array(integer({ min: 100, max: 599 }), { single: true, minItems: 1, description: 'Statuses that count as healthy.' }), [200]),
  healthy_after: withDefault(integer({ min: 1, description: 'Passed checks in a row that bring a target back.' }), 1),
  unhealthy_after: withDefault(integer({ min: 1, description: 'Failed checks in a row that take a target out.' }), 2),
  host: optional(string({ pattern: /^[A-Za-z0-9.-]+(:\d{1,5})?$/, patternName: 'host', description: 'Host header of the check (default: the target\'s).' })),
}, { description: 'Active health check: GET `path` on every target every `interval`.' });

const passiveDefaults = { status_5xx: false };
const passiveSchema = object({
  status_5xx: withDefault(boolean({ description: 'Count a 5xx answer of a target as a failed request too (not only connection errors and timeouts), so an instance that answers but is broken (503 while it starts, 500 on every request) is ejected. The answer still goes to its client; retries stay for connection failures only.' }), false),
}, { description: 'What passive health counts as a failed request.' });

const healthDefaults = { failures: 5, ejection: 10_000, max_ejection: 300_000, passive: passiveDefaults, check: undefined };
const healthSchema = object({
  failures: withDefault(integer({ min: 0, description: 'Consecutive failed requests (connection errors, timeouts; 5xx answers with passive.status_5xx) that eject a target; 0 turns passive health off. Applies to upstreams with several targets.' }), 5),
  ejection: withDefault(duration({ min: 1, description: 'How long a target stays ejected the first time; doubles with each ejection in a row.' }), 10_000),
  max_ejection: withDefault(duration({ min: 1, description: 'Longest ejection.' }), 300_000),
  passive: withDefault(passiveSchema, passiveDefaults),
  check: optional(activeCheckSchema),
}, { description: 'Passive health (ejection after failures) and the optional active check.' });

const retriesDefaults = { attempts: 1, budget_percent: 20, min_concurrent: 3 };
const retriesSchema = object({
  attempts: withDefault(integer({ min: 0, max: 5, description: 'Retries on another target after a connection failure, only for idempotent requests without a body.' }), 1),
  budget_percent: withDefault(integer({ min: 0, max: 100, description: 'Retries in flight may be at most this share of the requests in flight...' }), 20),
  min_concurrent: withDefault(integer({ min: 0, description: '...or this many, whichever is larger: retries cannot multiply an outage.' }), 3),
}, { description: 'Safe retries and their budget.' });

export const upstreamSchema = object(
  {
    url: optional(url({ protocols: PROTOCOLS, description: 'Base URL of a single-target service; its path is not prepended. Give `url` or `targets`.' })),
    targets: optional(array(targetSchema, { minItems: 1, description: 'Several instances of the service, balanced.' })),
    balance: withDefault(oneOf(['round_robin', 'least_request'] as const, { description: 'round_robin (weighted) or least_request (fewest outstanding requests per weight).' }), 'round_robin'),
    connect_timeout: withDefault(duration({ description: 'Time to open a connection (504 above it).' }), 2_000),
    timeout: withDefault(duration({ description: 'Time to the response head, and longest pause in the body (504).' }), 30_000),
    max_connections: withDefault(integer({ min: 1, description: 'Connections kept to each target per process.' }), 128),
    keep_alive_timeout: withDefault(duration({ description: 'Idle time before a pooled connection is closed; keep it below the upstream\'s own.' }), 4_000),
    http2: withDefault(boolean({ description: 'Speak HTTP/2 to the targets (ALPN over TLS; prior knowledge over http). Needed for gRPC.' }), false),
    tls: optional(tlsSchema),
    health: withDefault(healthSchema, healthDefaults),
    retries: withDefault(retriesSchema, retriesDefaults),
  },
  {
    description: 'An upstream service.',
    check(u, path, issues) {
      if ((u.url === undefined) === (u.targets === undefined)) issues.push({ path, message: 'give either "url" or "targets", not both' + (u.url === undefined ? ' (one is required)' : '') });
      if (u.targets && u.targets.length > MAX_TARGETS) issues.push({ path: [...path, 'targets'], message: `at most ${MAX_TARGETS} targets` });
      if (u.health.max_ejection < u.health.ejection) issues.push({ path: [...path, 'health', 'max_ejection'], message: 'must be at least "ejection"' });
    },
  },
);

export type UpstreamConfig = Infer<typeof upstreamSchema>;
type TargetConfig = { url: URL; weight: number; max_connections: number | undefined };

interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

function readPem(file: string, path: Path, env: CompileEnv | undefined): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch (err) {
    if (env) env.problem(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    else throw err;
    return undefined;
  }
}

/** With `workers: N` each process judges health itself; the aggregated value is 0 when any has the target out. */
function healthyGauge(metrics: MetricsRegistry): Gauge<'upstream' | 'target'> {
  const name = 'portcullis_upstream_target_healthy';
  const existing = metrics.registry.getSingleMetric(name);
  if (existing) return existing as Gauge<'upstream' | 'target'>;
  return new Gauge({
    name,
    help: 'Whether a target takes traffic (1) or is ejected or failing its health check (0).',
    labelNames: ['upstream', 'target'],
    aggregator: 'min',
    registers: [metrics.registry],
  });
}

/** How an upstream's active checks run. */
export interface UpstreamOptions {
  /**
   * `local`: this process checks (one process, or the cluster primary); `remote`: another process does
   * and its verdicts arrive through `applyCheck` (cluster workers), so probes do not multiply by workers.
   */
  activeChecks?: 'local' | 'remote';
  /** Told every verdict change of the local checker (the cluster primary broadcasts them). */
  onCheckChanged?: (upstream: string, target: string, healthy: boolean, detail: string) => void;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors after which the request may go to another target: the connection failed or broke. */
const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED']);

export class Upstream {
  readonly name: string;
  /** Origin of the first target (what `explain` shows for a single-target upstream). */
  readonly origin: string;
  readonly config: UpstreamConfig;
  readonly targets: readonly Target[];
  readonly balancer: Balancer;
  readonly http2: boolean;
  /** Connection options for upgrades (websocket.ts), TLS material included. */
  readonly tlsOptions: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string; rejectUnauthorized: boolean } | null;
  readonly #failureThreshold: number;
  readonly #count5xx: boolean;
  readonly #remoteChecks: boolean;
  readonly #onCheckChanged: UpstreamOptions['onCheckChanged'] | null;
  readonly #retryAttempts: number;
  readonly #budgetRatio: number;
  readonly #minConcurrentRetries: number;
  #retriesInFlight = 0;
  readonly #ejectionCounter: Counter<'upstream' | 'target'> | null;
  readonly #returnCounter: Counter<'upstream' | 'target'> | null;
  readonly #retryCounter: Counter<'upstream' | 'result'> | null;
  readonly #healthyGauge: Gauge<'upstream' | 'target'> | null;
  readonly #log: Telemetry['log'] | null;
  readonly #checker: ActiveHealthChecker | null;
  #closed = false;

  constructor(name: string, config: UpstreamConfig, env?: CompileEnv, path: Path = ['upstreams', name], options: UpstreamOptions = {}) {
    this.name = name;
    this.#remoteChecks = options.activeChecks === 'remote';
    this.#onCheckChanged = options.onCheckChanged ?? null;
    this.config = config;
    this.http2 = config.http2;
    const targetConfigs: TargetConfig[] = config.targets
      ? config.targets.map((t) => (t instanceof URL ? { url: t, weight: 1, max_connections: undefined } : t))
      : [{ url: config.url!, weight: 1, max_connections: undefined }];

    const tlsPath = [...path, 'tls'];
    const tls = config.tls;
    const material: TlsMaterial = {};
    if (tls) {
      if (tls.ca !== undefined) material.ca = readPem(tls.ca, [...tlsPath, 'ca'], env);
      if (tls.cert !== undefined) material.cert = readPem(tls.cert, [...tlsPath, 'cert'], env);
      if (tls.key !== undefined) material.key = readPem(tls.key, [...tlsPath, 'key'], env);
      if (!tls.verify && env?.mode === 'production') env.problem([...tlsPath, 'verify'], 'production: upstream certificate verification cannot be turned off');
      if (!targetConfigs.some((t) => t.url.protocol === 'https:')) env?.problem(tlsPath, '"tls" needs https targets');
    }
    const rejectUnauthorized = tls?.verify ?? true;
    this.tlsOptions = targetConfigs.some((t) => t.url.protocol === 'https:')
      ? { ...material, ...(tls?.servername !== undefined ? { servername: tls.servername } : {}), rejectUnauthorized }
      : null;

    this.targets = targetConfigs.map((t, i) => {
      const https = t.url.protocol === 'https:';
      const hostname = t.url.hostname.replace(/^\[|\]$/g, '');
      // SNI: the configured name, else the target's host name (never an IP address, which SNI forbids).
      const sni = tls?.servername ?? (isIP(hostname) ? undefined : hostname);
      // undici would take SNI from each request's Host header (the client's, by default) and drop the
      // connection whenever it changes; a connector with the name fixed per target prevents both.
      const base = buildConnector({
        timeout: config.connect_timeout,
        allowH2: config.http2,
        // Pool does not pass useH2c to the connector it builds; this one must say it (prior-knowledge h2c).
        ...(config.http2 && !https ? { useH2c: true } : {}),
        ...(https ? { ...material, rejectUnauthorized, ...(sni !== undefined ? { servername: sni } : {}) } : {}),
      } as Undici.buildConnector.BuildOptions);
      const connect: Undici.buildConnector.connector = https ? (opts, cb) => base({ ...opts, servername: sni as string }, cb) : base;
      const pool = new Pool(t.url.origin, {
        connections: t.max_connections ?? config.max_connections,
        pipelining: config.http2 ? 100 : 1,
        allowH2: config.http2,
        connectTimeout: config.connect_timeout,
        headersTimeout: config.timeout,
        bodyTimeout: config.timeout,
        keepAliveTimeout: config.keep_alive_timeout,
        keepAliveMaxTimeout: Math.max(config.keep_alive_timeout, 1_000),
        connect,
      } as Undici.Pool.Options);
      const capacity = (t.max_connections ?? config.max_connections) * (config.http2 ? 100 : 1);
      return new Target(i, t.url, t.weight, pool, https ? (sni ?? hostname) : undefined, capacity);
    });
    this.origin = this.targets[0]!.origin;
    this.balancer = new Balancer(this.targets, config.balance as BalanceMode);
    // One target has nowhere else to send traffic: ejecting it would only turn 502s into 503s and keep
    // it out after it recovers. Its active check (if any) still applies.
    this.#failureThreshold = this.targets.length > 1 ? config.health.failures : 0;
    this.#count5xx = config.health.passive.status_5xx && this.#failureThreshold > 0;
    this.#retryAttempts = this.targets.length > 1 ? Math.min(config.retries.attempts, this.targets.length - 1) : 0;
    this.#budgetRatio = config.retries.budget_percent / 100;
    this.#minConcurrentRetries = config.retries.min_concurrent;

    const telemetry = env?.telemetry ?? null;
    this.#log = telemetry?.log ?? null;
    const metrics = telemetry?.metrics ?? null;
    this.#ejectionCounter = metrics ? metrics.counter('portcullis_upstream_ejections_total', 'Targets ejected by passive health, by upstream and target.', ['upstream', 'target']) : null;
    this.#returnCounter = metrics ? metrics.counter('portcullis_upstream_returns_total', 'Ejected targets taken back after their back-off, by upstream and target.', ['upstream', 'target']) : null;
    this.#retryCounter = metrics ? metrics.counter('portcullis_upstream_retries_total', 'Retries on another target, by upstream and result (retried, budget_exhausted, no_target).', ['upstream', 'result']) : null;
    this.#healthyGauge = metrics ? healthyGauge(metrics) : null;
    for (const t of this.targets) {
      this.#ejectionCounter?.inc({ upstream: name, target: t.origin }, 0);
      this.#returnCounter?.inc({ upstream: name, target: t.origin }, 0);
      this.#healthyGauge?.set({ upstream: name, target: t.origin }, 1);
    }

    const check = config.health.check;
    this.#checker = check && !this.#remoteChecks
      ? new ActiveHealthChecker(this.targets, check, { changed: (t, healthy, detail) => this.#checkChanged(t, healthy, detail) })
      : null;
    // Only a compiled policy (env given) checks actively; `validate`, `explain` and unit tests stay quiet.
    if (this.#checker !== null && env !== undefined) this.#checker.start();
  }

  /** Pool of the first target (single-target upstreams). */
  get pool(): Pool {
    return this.targets[0]!.pool;
  }

  /** The target for the next attempt, or null (503 no_healthy_upstream). `tried`: bit set of targets used. */
  pick(tried: number): Target | null {
    return this.balancer.pick(tried);
  }

  /** The target answered with a response head: a success, or with `passive.status_5xx` a 5xx failure. */
  answered(target: Target, status: number): void {
    if (status >= 500 && this.#count5xx) this.failed(target, true, 'status_5xx');
    else this.succeeded(target);
  }

  /** The target answered with a response head: its run of failures ends. */
  succeeded(target: Target): void {
    if (target.failures !== 0) target.failures = 0;
    if (target.ejections !== 0 && !target.ejected) target.ejections = 0;
  }

  /** The attempt failed before a response head; `countsAsFailure` for connection errors and timeouts. */
  failed(target: Target, countsAsFailure: boolean, reason: string): void {
    if (!countsAsFailure || this.#failureThreshold === 0 || target.ejected) return;
    target.failures++;
    if (target.failures >= this.#failureThreshold) this.#eject(target, reason);
  }

  /** The attempt is over (answered, failed or aborted): once per `Target.dispatch` that reached the pool. */
  released(target: Target): void {
    target.ended();
  }

  /**
   * May a request that failed on its `attempt`-th try (0-based) with this error go to another target?
   * Only idempotent methods without a body, only connection failures, only within the budget.
   */
  mayRetry(attempt: number, method: string, hasBody: boolean, code: string | undefined): boolean {
    if (attempt >= this.#retryAttempts || hasBody || code === undefined || !RETRYABLE.has(code) || !IDEMPOTENT.has(method)) return false;
    let active = 0;
    for (const t of this.targets) active += t.inflight;
    if (this.#retriesInFlight >= Math.max(this.#minConcurrentRetries, this.#budgetRatio * active)) {
      this.#retryCounter?.inc({ upstream: this.name, result: 'budget_exhausted' });
      return false;
    }
    return true;
  }

  retryStarted(found: boolean): void {
    if (found) this.#retriesInFlight++;
    this.#retryCounter?.inc({ upstream: this.name, result: found ? 'retried' : 'no_target' });
  }

  retryEnded(): void {
    this.#retriesInFlight--;
  }

  #eject(target: Target, reason: string): void {
    const backoff = Math.min(this.config.health.ejection * 2 ** target.ejections, this.config.health.max_ejection);
    target.ejections++;
    target.ejected = true;
    target.available = false;
    target.failures = 0;
    target.lastEjection = { reason, at: Date.now(), ms: backoff };
    this.#ejectionCounter?.inc({ upstream: this.name, target: target.origin });
    this.#healthyGauge?.set({ upstream: this.name, target: target.origin }, 0);
    this.#log?.warn({ upstream: this.name, target: target.origin, reason, ejection_ms: backoff, ejections_in_a_row: target.ejections }, 'upstream target ejected');
    target.ejectionTimer = setTimeout(() => this.#returnFromEjection(target), backoff);
    target.ejectionTimer.unref();
  }

  #returnFromEjection(target: Target): void {
    target.ejectionTimer = null;
    target.ejected = false;
    target.available = target.checkHealthy;
    if (target.available) this.#healthyGauge?.set({ upstream: this.name, target: target.origin }, 1);
    this.#returnCounter?.inc({ upstream: this.name, target: target.origin });
    this.#log?.info({ upstream: this.name, target: target.origin }, 'upstream target returned after ejection');
  }

  #checkChanged(target: Target, healthy: boolean, detail: string, at = Date.now()): void {
    if (this.#closed) return;
    target.checkHealthy = healthy;
    target.lastCheck = { healthy, detail, at };
    target.available = healthy && !target.ejected;
    this.#healthyGauge?.set({ upstream: this.name, target: target.origin }, target.available ? 1 : 0);
    if (this.#remoteChecks) return; // the process that checked logged it
    this.#onCheckChanged?.(this.name, target.origin, healthy, detail);
    if (healthy) this.#log?.info({ upstream: this.name, target: target.origin, check: detail }, 'upstream target passes its health check');
    else this.#log?.warn({ upstream: this.name, target: target.origin, check: detail }, 'upstream target fails its health check');
  }

  /** A verdict of the active check run by another process (cluster primary) on the target `origin`. */
  applyCheck(origin: string, healthy: boolean, detail: string, at: number): void {
    const target = this.targets.find((t) => t.origin === origin);
    if (target === undefined || this.config.health.check === undefined) return;
    if (target.checkHealthy !== healthy || target.lastCheck === null) this.#checkChanged(target, healthy, detail, at);
  }

  /**
   * Takes over the health of unchanged targets (same origin) from the upstream of the same name in the
   * policy this one replaces: a reload must not bring back an ejected target, forget a run of failures,
   * or count a failing target healthy until its check runs again. An ejection goes on for what is left
   * of its back-off, on this upstream's timer (the old one stops when its policy is retired).
   */
  adoptHealth(previous: Upstream): void {
    const now = Date.now();
    for (const target of this.targets) {
      const old = previous.targets.find((t) => t.origin === target.origin);
      if (old === undefined) continue;
      target.failures = old.failures;
      target.ejections = old.ejections;
      target.lastEjection = old.lastEjection;
      if (this.config.health.check !== undefined && previous.config.health.check !== undefined) {
        target.checkHealthy = old.checkHealthy;
        target.lastCheck = old.lastCheck;
      }
      if (old.ejected && old.lastEjection !== null) {
        const left = old.lastEjection.at + old.lastEjection.ms - now;
        if (left > 0) {
          target.ejected = true;
          target.ejectionTimer = setTimeout(() => this.#returnFromEjection(target), left);
          target.ejectionTimer.unref();
        }
      }
      target.available = target.checkHealthy && !target.ejected;
      this.#healthyGauge?.set({ upstream: this.name, target: target.origin }, target.available ? 1 : 0);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#checker?.close();
    for (const t of this.targets) {
      if (t.ejectionTimer !== null) clearTimeout(t.ejectionTimer);
      t.ejectionTimer = null;
    }
    await Promise.all(this.targets.map((t) => t.pool.close()));
  }
}
