// The dashboard's JSON state: what the running gateway already holds, gathered when the page asks (every
// couple of seconds while it is open), never on the request path. Routes in the `explain` view with their
// live window, upstream targets with health and pool use, the modules' status reports (rate-limit store,
// JWT key sets, forward auth), the policy and its reload history, TLS certificates and their expiry.
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { CompiledPolicy } from '../../policy/compile.ts';
import type { StatusReport } from '../../contract/filter.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Upstream } from '../../proxy/upstream.ts';
import { describeGlobalFilters, describeRoute } from '../explain.ts';
import type { StatsSampler } from './sampler.ts';

/** One reload attempt, as the process runner records it. */
export interface ReloadRecord {
  /** Epoch ms. */
  at: number;
  ok: boolean;
  hash?: string;
  /** The problems of a refused reload (the policy in force stayed). */
  errors?: string[];
}

/** What the dashboard reads from the running process. */
export interface DashboardSource {
  policy(): CompiledPolicy;
  metrics: Metrics;
  /** Epoch ms when the policy in force was loaded. */
  loadedAt(): number;
  /** Reload attempts, oldest first (bounded by the runner). */
  reloads(): readonly ReloadRecord[];
  inflight(): number;
  draining(): boolean;
}

const DAY = 86_400_000;
/** Status kinds shown as identity providers on the dashboard. */
const IDENTITY_KINDS = new Set(['jwt', 'forward_auth', 'api_key', 'client_cert']);
/** Certificates that expire sooner than this get a warning. */
export const EXPIRY_WARNING_DAYS = 14;

interface CertInfo {
  subject: string;
  issuer: string;
  san: string | null;
  not_before: number;
  not_after: number;
}

const certCache = new Map<string, { mtimeMs: number; size: number; info: CertInfo | string }>();

/** The leaf certificate of a PEM chain file, cached by mtime and size (the listeners re-read it when it changes). */
function certificateOf(file: string): CertInfo | string {
  try {
    const st = statSync(file);
    const cached = certCache.get(file);
    if (cached !== undefined && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached.info;
    const x = new X509Certificate(readFileSync(file));
    const info: CertInfo = {
      subject: x.subject.replace(/\n/g, ', '),
      issuer: x.issuer.replace(/\n/g, ', '),
      san: x.subjectAltName ?? null,
      not_before: Date.parse(x.validFrom),
      not_after: Date.parse(x.validTo),
    };
    certCache.set(file, { mtimeMs: st.mtimeMs, size: st.size, info });
    return info;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

function maskUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password) copy.password = '********';
  return copy.href;
}

interface Ejections {
  [key: string]: number;
}

async function ejectionTotals(metrics: Metrics): Promise<Ejections> {
  const m = metrics.registry.getSingleMetric('portcullis_upstream_ejections_total');
  const out: Ejections = {};
  if (m === undefined) return out;
  for (const v of (await m.get()).values) out[`${v.labels.upstream}\0${v.labels.target}`] = v.value;
  return out;
}

function upstreamState(u: Upstream, ejections: Ejections, now: number): Record<string, unknown> {
  return {
    name: u.name,
    balance: u.config.balance,
    http2: u.http2,
    max_connections: u.config.max_connections,
    active_check: u.config.health.check ? { path: u.config.health.check.path, interval_ms: u.config.health.check.interval } : null,
    targets: u.targets.map((t) => {
      const stats = t.pool.stats;
      const e = t.lastEjection;
      return {
        url: maskUrl(t.url),
        weight: t.weight,
        state: t.ejected ? 'ejected' : !t.checkHealthy ? 'failing_check' : 'healthy',
        available: t.available,
        failures_in_a_row: t.failures,
        ejections_in_a_row: t.ejections,
        ejections_total: ejections[`${u.name}\0${t.origin}`] ?? 0,
        last_ejection: e === null ? null : { reason: e.reason, at: e.at, ms: e.ms, until: e.at + e.ms, active: t.ejected && e.at + e.ms > now },
        last_check: t.lastCheck,
        inflight: t.inflight,
        // Requests beyond the pool's slots wait in the target's own queue (Target.dispatch), not undici's.
        pool: { connected: stats.connected, free: stats.free, running: stats.running, pending: stats.pending, queued: stats.queued + t.queued, size: stats.size },
      };
    }),
  };
}

/** The whole state; the caller masks secrets (`policy.source.secrets.mask`) before sending it. */
export async function dashboardState(source: DashboardSource, sampler: StatsSampler | null): Promise<Record<string, unknown>> {
  const policy = source.policy();
  const now = Date.now();
  const live = sampler === null ? null : await sampler.stats();
  const ejections = await ejectionTotals(source.metrics);
  const reports: StatusReport[] = [];
  for (const report of policy.status.values()) {
    try {
      reports.push(report());
    } catch (err) {
      reports.push({ kind: 'error', error: err instanceof Error ? err.message : String(err) });
    }
  }
  const certificates = policy.listeners.filter((l) => l.tls !== undefined).map((l) => {
    const info = certificateOf(l.tls!.cert);
    if (typeof info === 'string') return { listener: l.name ?? l.address, file: l.tls!.cert, error: info };
    const daysLeft = Math.floor((info.not_after - now) / DAY);
    return { listener: l.name ?? l.address, file: l.tls!.cert, ...info, days_left: daysLeft, warning: daysLeft < EXPIRY_WARNING_DAYS };
  });
  const noRoute = live?.routes.none;
  return {
    now,
    gateway: { inflight: source.inflight(), draining: source.draining(), pid: process.pid, uptime_s: Math.round(process.uptime()) },
    policy: {
      file: policy.file,
      hash: policy.hash,
      mode: policy.mode,
      loaded_at: source.loadedAt(),
      workers: policy.workers,
      admin: policy.admin.address,
      reloads: [...source.reloads()].reverse(),
    },
    certificates,
    live: live === null ? null : { window_ms: live.window_ms, interval_ms: live.interval_ms, unrouted: noRoute ?? null },
    global_filters: describeGlobalFilters(policy),
    routes: policy.routes.map((r) => ({ ...describeRoute(r), live: live?.routes[r.name] ?? null })),
    upstreams: [...policy.upstreams.values()].map((u) => upstreamState(u, ejections, now)),
    rate_limits: { stores: reports.filter((r) => r.kind === 'rate_limit_store'), limits_hit: live?.limits_hit ?? [] },
    identity: reports.filter((r) => IDENTITY_KINDS.has(r.kind)),
    other_status: reports.filter((r) => r.kind !== 'rate_limit_store' && !IDENTITY_KINDS.has(r.kind)),
    readiness: Object.fromEntries([...policy.readiness].map(([name, check]) => [name, check() === true ? 'ok' : check()])),
  };
}
