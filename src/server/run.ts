// The gateway process: load and compile the policy, start listeners and the admin port, reload on SIGHUP /
// file change / POST /reload, drain on SIGTERM. With `workers: N` a primary process keeps the admin port
// and supervises N workers that share the listeners (node:cluster); a dead worker is replaced.
import cluster, { type Worker } from 'node:cluster';
import { unwatchFile, watchFile } from 'node:fs';
import { resolve } from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import { loadAndCompile, loadUpstreams, type CompiledPolicy, type CompiledUpstreams } from '../policy/compile.ts';
import { PolicyError } from '../config/errors.ts';
import { SecretRegistry } from '../config/secrets.ts';
import { createLoggers, logCrashes, parseLogLevel, type LogLevel, type Loggers } from '../observability/logs.ts';
import { Metrics } from '../observability/metrics.ts';
import { RequestTelemetry } from '../observability/request-telemetry.ts';
import type { Telemetry } from '../contract/telemetry.ts';
import { tracingSettings } from '../observability/tracing-config.ts';
import { startAdmin } from './admin.ts';
import { Dashboard, type ReloadRecord } from './dashboard/index.ts';
import { Gateway } from './gateway.ts';
import { startIdleMemoryRelease } from './idle-memory.ts';
import { splitAddress, startListener, type RunningListener } from './listeners.ts';

export interface StartOptions {
  configFile: string;
  /** Print listening addresses to stdout (the CLI does; tests read them). */
  announce?: (line: string) => void;
}

/** A verdict of an active health check, as the cluster primary sends it to the workers. */
interface HealthVerdict {
  upstream: string;
  target: string;
  healthy: boolean;
  detail: string;
  at: number;
}

type WorkerMessage =
  | { type: 'portcullis:ready'; addresses: string[] }
  | { type: 'portcullis:reload' }
  | { type: 'portcullis:reloaded'; ok: boolean; hash?: string; errors?: string[] }
  | { type: 'portcullis:health'; verdicts: HealthVerdict[] };

/** LOG_LEVEL (trace, debug, info, warn/warning, error, fatal/critical, silent) wins over the policy. */
function levelFromEnv(fallback: LogLevel): LogLevel {
  return parseLogLevel(process.env.LOG_LEVEL) ?? fallback;
}

function makeTelemetry(policy: CompiledPolicy | null, secrets: { current: SecretRegistry | null }): { telemetry: Telemetry<Metrics>; loggers: Loggers } {
  const log = policy?.policy.log ?? { level: 'info' as const, access: 'stdout', audit: 'stderr', error: 'stderr' };
  const metrics = new Metrics();
  const loggers = createLoggers({ level: levelFromEnv(log.level), access: log.access, audit: log.audit, error: log.error }, secrets, (name) =>
    metrics.logDropped.inc({ log: name }),
  );
  return { telemetry: { log: loggers.error, audit: loggers.audit, metrics }, loggers };
}

function problemsOf(err: unknown): string[] {
  if (err instanceof PolicyError) return err.message.split('\n');
  return [err instanceof Error ? err.message : String(err)];
}

/** A bootstrap compile only to learn the log and worker settings; errors are reported by the caller. */
function bootstrap(file: string, production = false): CompiledPolicy {
  const bootTelemetry: Telemetry<Metrics> = {
    log: createLoggers({ level: 'silent', access: 'off', audit: 'off', error: 'off' }, { current: null }).error,
    audit: createLoggers({ level: 'silent', access: 'off', audit: 'off', error: 'off' }, { current: null }).audit,
    metrics: new Metrics({ defaultMetrics: false }),
  };
  return loadAndCompile(file, { telemetry: bootTelemetry, production });
}

export async function start(options: StartOptions): Promise<void> {
  const file = resolve(options.configFile);
  const announce = options.announce ?? ((line: string) => process.stdout.write(line + '\n'));
  const boot = bootstrap(file);
  const workers = boot.workers;
  await boot.close();
  if (workers > 1 && cluster.isPrimary) return startPrimary(file, workers, announce);
  return startServing(file, announce, cluster.isWorker);
}

/** One serving process: listeners, gateway, (admin when not a cluster worker). */
async function startServing(file: string, announce: (line: string) => void, isWorker: boolean): Promise<void> {
  const secrets: { current: SecretRegistry | null } = { current: null };
  const first = bootstrap(file);
  const made = makeTelemetry(first, secrets);
  const loggers = made.loggers;
  // Tracing is read at start (a reload does not change it). Off: the OpenTelemetry modules are never loaded.
  const traceSettings = tracingSettings(first.policy.tracing);
  const tracing = traceSettings === null ? null : (await import('../observability/tracing.ts')).createTracing(traceSettings, made.telemetry.log);
  const telemetry: Telemetry<Metrics> = { ...made.telemetry, tracing };
  await first.close();
  // A cluster worker leaves active health checks to the primary (one probe per target and interval for
  // the whole gateway) and takes its verdicts from 'portcullis:health' messages.
  const activeChecks = isWorker ? 'remote' as const : 'local' as const;
  let policy = loadAndCompile(file, { telemetry, activeChecks });
  secrets.current = policy.source.secrets;
  await policy.ready;
  const log = telemetry.log;
  logCrashes(log, () => loggers.flush());
  const gateway = new Gateway(policy, telemetry);
  if (tracing !== null) gateway.observers.push(tracing); // ends the spans before the access line reads the trace id
  gateway.observers.push(new RequestTelemetry(telemetry.metrics, loggers.access, loggers.audit, telemetry.log, tracing));
  telemetry.metrics.setPolicy(policy.hash);
  if (isWorker) {
    // Constructing one installs prom-client's worker-side listener that answers the primary's scrapes.
    void new AggregatorRegistry();
    AggregatorRegistry.setRegistries([telemetry.metrics.registry]);
  }

  if (policy.mode === 'development' && !isWorker) {
    log.warn('DEVELOPMENT MODE: insecure settings are allowed; set `mode: production` and run `portcullis validate --production` before exposing this gateway');
    // A banner for a human at a terminal; piped stderr (log collectors, tests) keeps one JSON line per entry.
    if (process.stderr.isTTY) {
      process.stderr.write(
        '\n*** PORTCULLIS IS RUNNING IN DEVELOPMENT MODE: INSECURE SETTINGS ARE ALLOWED ***\n' +
          '*** do not expose it; set `mode: production` and run `portcullis validate --production FILE` first ***\n\n',
      );
    }
  }
  if (traceSettings !== null && !isWorker) log.info({ service: traceSettings.serviceName, sampler: traceSettings.sampler.kind }, 'tracing on: OTLP/HTTP export');

  const listeners: RunningListener[] = [];
  for (const l of policy.listeners) listeners.push(await startListener(l, gateway, policy.limits, log, isWorker));
  startIdleMemoryRelease({
    started: () => gateway.started,
    mode: () => (gateway.draining ? 'off' : gateway.policy.limits.release_memory),
    onRelease: ({ before, after, pauseMs }) => {
      const m = telemetry.metrics;
      m.idleReleases.inc();
      m.idleReleasedBytes.inc(Math.max(0, before - after));
      m.idleReleasePause.inc(pauseMs / 1000);
      log.debug({ before_bytes: before, after_bytes: after, pause_ms: +pauseMs.toFixed(1) }, 'idle: compacting GC gave memory back');
    },
  });

  // For the dashboard: when the policy in force was loaded, and the last reload attempts with their errors.
  let loadedAt = Date.now();
  const reloads: ReloadRecord[] = [];
  const record = (r: ReloadRecord) => {
    reloads.push(r);
    if (reloads.length > 20) reloads.shift();
  };

  let reloading: Promise<{ ok: true; hash: string } | { ok: false; errors: string[] }> | null = null;
  const reload = (): Promise<{ ok: true; hash: string } | { ok: false; errors: string[] }> => {
    // Reloads queue behind each other so two triggers never compile and swap concurrently.
    const run = async (): Promise<{ ok: true; hash: string } | { ok: false; errors: string[] }> => {
      let next: CompiledPolicy;
      try {
        next = loadAndCompile(file, { telemetry, activeChecks, previous: policy });
        await next.ready;
      } catch (err) {
        telemetry.metrics.reloads.inc({ result: 'failure' });
        const errors = problemsOf(err);
        record({ at: Date.now(), ok: false, errors: errors.map((e) => policy.source.secrets.mask(e)) });
        log.error({ errors }, 'policy reload failed; the previous policy stays in force');
        return { ok: false, errors };
      }
      if (JSON.stringify(next.listeners) !== JSON.stringify(policy.listeners)) {
        log.warn('listener changes take effect at the next restart; routes and filters were reloaded');
      }
      policy = next;
      secrets.current = next.source.secrets;
      gateway.swap(next);
      telemetry.metrics.reloads.inc({ result: 'success' });
      telemetry.metrics.setPolicy(next.hash);
      loadedAt = Date.now();
      record({ at: loadedAt, ok: true, hash: next.hash });
      log.info({ policy_hash: next.hash }, 'policy reloaded');
      return { ok: true, hash: next.hash };
    };
    reloading = (reloading ?? Promise.resolve()).then(run, run);
    return reloading;
  };

  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  if (!isWorker) {
    const dashboard = policy.admin.dashboard
      ? new Dashboard({
          policy: () => gateway.policy,
          metrics: telemetry.metrics,
          loadedAt: () => loadedAt,
          reloads: () => reloads,
          inflight: () => gateway.inflight,
          draining: () => gateway.draining,
        }, { adminHost: splitAddress(policy.admin.address).host })
      : null;
    admin = await startAdmin(policy.admin.address, {
      ready: () => readiness(gateway),
      reload,
      metrics: async () => ({ contentType: telemetry.metrics.registry.contentType, body: await telemetry.metrics.registry.metrics() }),
      dashboard,
    });
  }

  // Policy file watch: a change is reloaded once the file has been stable for a moment.
  let debounce: NodeJS.Timeout | null = null;
  watchFile(file, { interval: 500, persistent: false }, (curr, prev) => {
    if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size) return;
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => void reload(), 200);
  });

  process.on('SIGHUP', () => void reload());
  if (isWorker) {
    process.on('message', (msg: WorkerMessage) => {
      if (msg?.type === 'portcullis:reload') {
        void reload().then((r) => process.send?.({ type: 'portcullis:reloaded', ok: r.ok, hash: r.ok ? r.hash : undefined, errors: r.ok ? undefined : r.errors }));
      } else if (msg?.type === 'portcullis:health') {
        for (const v of msg.verdicts) gateway.policy.upstreams.get(v.upstream)?.applyCheck(v.target, v.healthy, v.detail, v.at);
      }
    });
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.draining = true;
    unwatchFile(file);
    log.info({ signal, inflight: gateway.inflight }, 'shutting down: draining in-flight requests');
    const grace = policy.limits.shutdown_grace;
    const timer = setTimeout(() => {
      log.warn({ inflight: gateway.inflight }, 'shutdown grace period over; closing remaining connections');
      for (const l of listeners) l.destroy();
    }, grace);
    timer.unref();
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    await gateway.idle();
    clearTimeout(timer);
    await admin?.close();
    await gateway.close();
    await tracing?.shutdown(); // exports the spans still batched
    await loggers.drain(1_000);
    loggers.flush();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));

  const addresses = listeners.map((l) => l.url + (l.config.redirect_to_https ? ' (redirects to https)' : ''));
  if (isWorker) {
    process.send?.({ type: 'portcullis:ready', addresses } satisfies WorkerMessage);
  } else {
    for (const a of addresses) announce(`portcullis listening on ${a}`);
    if (admin) announce(`portcullis admin on http://${admin.address}`);
    announce(`portcullis policy ${file} (${policy.mode}, hash ${policy.hash})`);
  }
}

function readiness(gateway: Gateway): { ready: boolean; checks: Record<string, string> } {
  const checks: Record<string, string> = {};
  let ready = !gateway.draining;
  checks.gateway = gateway.draining ? 'draining' : 'ok';
  for (const [name, check] of gateway.policy.readiness) {
    const r = check();
    checks[name] = r === true ? 'ok' : r;
    if (r !== true) ready = false;
  }
  return { ready, checks };
}

/** The primary of `workers: N`: admin port, aggregated metrics, reload fan-out, worker supervision. */
async function startPrimary(file: string, count: number, announce: (line: string) => void): Promise<void> {
  const secrets: { current: SecretRegistry | null } = { current: null };
  const policy = bootstrap(file);
  secrets.current = policy.source.secrets;
  const { telemetry, loggers } = makeTelemetry(policy, secrets);
  await policy.close();
  const log = telemetry.log;
  logCrashes(log, () => loggers.flush());
  const aggregator = new AggregatorRegistry();
  let draining = false;
  const live = new Set<Worker>();
  /** Workers that said ready: they listen for health verdicts. */
  const serving = new Set<Worker>();

  // Active health checks run here, once for the gateway; every verdict change goes to the serving workers,
  // and a worker that becomes ready (a replacement too) gets all current verdicts.
  const verdicts = new Map<string, HealthVerdict>();
  const broadcast = (list: HealthVerdict[]) => {
    if (list.length === 0) return;
    for (const w of serving) if (w.isConnected()) w.send({ type: 'portcullis:health', verdicts: list } satisfies WorkerMessage);
  };
  const onCheckChanged = (upstream: string, target: string, healthy: boolean, detail: string) => {
    const v: HealthVerdict = { upstream, target, healthy, detail, at: Date.now() };
    verdicts.set(`${upstream} ${target}`, v);
    broadcast([v]);
  };
  let checks: CompiledUpstreams | null = null;
  const loadChecks = async () => {
    try {
      const next = loadUpstreams(file, telemetry, onCheckChanged, checks);
      const before = checks;
      checks = next;
      await before?.close();
      // Verdicts of upstreams or targets the policy no longer has are dropped.
      for (const [key, v] of verdicts) {
        const u = next.upstreams.get(v.upstream);
        if (u === undefined || !u.targets.some((t) => t.origin === v.target)) verdicts.delete(key);
      }
    } catch (err) {
      log.error({ errors: problemsOf(err) }, 'health checks: policy not loaded; the previous checks go on');
    }
  };
  await loadChecks();

  const fork = (): Worker => {
    const w = cluster.fork();
    live.add(w);
    w.on('exit', (code, signal) => {
      live.delete(w);
      serving.delete(w);
      if (!draining) {
        log.error({ worker: w.process.pid, code, signal }, 'worker died; starting a replacement');
        setTimeout(fork, 200);
      }
    });
    return w;
  };

  const readyWorkers = new Promise<string[]>((resolveReady) => {
    let n = 0;
    cluster.on('message', (w, msg: WorkerMessage) => {
      if (msg?.type !== 'portcullis:ready') return;
      serving.add(w);
      if (verdicts.size) w.send({ type: 'portcullis:health', verdicts: [...verdicts.values()] } satisfies WorkerMessage);
      if (++n === count) resolveReady(msg.addresses);
    });
  });
  for (let i = 0; i < count; i++) fork();

  // Each worker compiles and swaps its own copy; the answer is the first failure, or success.
  const reload = async (): Promise<{ ok: true; hash: string } | { ok: false; errors: string[] }> => {
    const results = await Promise.all(
      [...live].map(
        (w) =>
          new Promise<WorkerMessage>((resolveOne) => {
            const onMessage = (msg: WorkerMessage) => {
              if (msg?.type === 'portcullis:reloaded') {
                w.off('message', onMessage);
                resolveOne(msg);
              }
            };
            w.on('message', onMessage);
            w.send({ type: 'portcullis:reload' } satisfies WorkerMessage);
          }),
      ),
    );
    for (const r of results) if (r.type === 'portcullis:reloaded' && !r.ok) return { ok: false, errors: r.errors ?? [] };
    await loadChecks();
    // A verdict sent while a worker compiled went to its previous policy: send them all again.
    broadcast([...verdicts.values()]);
    const first = results[0];
    return { ok: true, hash: first?.type === 'portcullis:reloaded' ? (first.hash ?? '') : '' };
  };

  const admin = await startAdmin(policy.admin.address, {
    ready: () => ({ ready: !draining && live.size === count, checks: { workers: `${live.size}/${count}`, gateway: draining ? 'draining' : 'ok' } }),
    reload,
    // Counters are summed over workers; per-process facts (reloads, policy info) use max (see metrics.ts).
    metrics: async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }),
  });

  process.on('SIGHUP', () => void reload());
  let debounce: NodeJS.Timeout | null = null;
  watchFile(file, { interval: 500, persistent: false }, (curr, prev) => {
    if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size) return;
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => void reload(), 200);
  });

  const shutdown = async (signal: string) => {
    if (draining) return;
    draining = true;
    log.info({ signal }, 'shutting down workers');
    unwatchFile(file);
    await Promise.all(
      [...live].map(
        (w) =>
          new Promise<void>((resolveExit) => {
            w.once('exit', () => resolveExit());
            w.process.kill('SIGTERM');
          }),
      ),
    );
    await admin.close();
    await checks?.close();
    loggers.flush();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));

  const addresses = await readyWorkers;
  for (const a of addresses) announce(`portcullis listening on ${a} (${count} workers)`);
  announce(`portcullis admin on http://${admin.address}`);
  announce(`portcullis policy ${file} (${policy.mode}, hash ${policy.hash})`);
}
