// End-of-request telemetry: metrics by route name (never raw paths, so cardinality stays bounded), one
// access-log line, an audit line for audited requests, and an error-log line for upstream failures.
// Nothing here writes synchronously to a file: pino's destinations buffer and flush in the background.
import type { Logger } from 'pino';
import type { RequestContext, RouteInfo } from '../contract/context.ts';
import type { AccessLog } from './logs.ts';
import type { Metrics, RouteMetrics } from './metrics.ts';
import type { TracingApi } from '../contract/telemetry.ts';

export { statusClass } from './metrics.ts';

/** What an audit line says happened. */
export function auditOutcome(ctx: RequestContext, status: number): 'succeeded' | 'denied' | 'failed' {
  if (ctx.deny !== null && ctx.deny.filter !== 'upstream') return 'denied';
  return status >= 400 ? 'failed' : 'succeeded';
}

export class RequestTelemetry {
  readonly #metrics: Metrics;
  readonly #access: AccessLog;
  readonly #audit: Logger;
  readonly #log: Logger | null;
  readonly #tracing: TracingApi | null;
  readonly #accessOn: boolean;
  readonly #auditOn: boolean;
  readonly #byRoute = new WeakMap<RouteInfo, RouteMetrics>();
  readonly #noRoute: RouteMetrics;

  constructor(metrics: Metrics, access: AccessLog, audit: Logger, log: Logger | null = null, tracing: TracingApi | null = null) {
    this.#metrics = metrics;
    this.#access = access;
    this.#audit = audit;
    this.#log = log;
    this.#tracing = tracing;
    this.#accessOn = access.enabled;
    this.#auditOn = audit.isLevelEnabled('info');
    this.#noRoute = metrics.route('none');
  }

  #routeMetrics(route: RouteInfo | null): RouteMetrics {
    if (route === null) return this.#noRoute;
    let m = this.#byRoute.get(route);
    if (m === undefined) {
      m = this.#metrics.route(route.name);
      this.#byRoute.set(route, m);
    }
    return m;
  }

  onRequestEnd(ctx: RequestContext): void {
    const status = ctx.status === 0 ? 499 : ctx.status;
    const routeName = ctx.route?.name ?? 'none';
    const seconds = (performance.now() - ctx.startTime) / 1000;
    this.#routeMetrics(ctx.route).observe(ctx.method, status, seconds);
    const deny = ctx.deny;
    if (deny !== null) {
      this.#metrics.denies.inc({ route: routeName, filter: deny.filter, reason: deny.reason });
      if (deny.filter === 'upstream' && this.#log !== null && deny.reason !== 'client_closed_request') {
        this.#log.warn({ request_id: ctx.id, route: routeName, upstream: ctx.route?.upstream?.name, reason: deny.reason, status }, 'upstream request failed');
      }
    }
    const reported = ctx.reported;
    if (reported !== null) for (const r of reported) this.#metrics.reportedDenies.inc({ route: routeName, filter: r.filter, reason: r.reason });
    const traceId = this.#tracing === null ? undefined : this.#tracing.traceId(ctx);
    if (this.#accessOn) {
      this.#access.write({
        request_id: ctx.id,
        trace_id: traceId,
        client_ip: ctx.clientIp,
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        protocol: ctx.httpVersion,
        route: routeName,
        status,
        duration_ms: Math.round(seconds * 100_000) / 100,
        upstream: ctx.route?.upstream?.name,
        upstream_status: ctx.upstreamStatus || undefined,
        upstream_duration_ms: ctx.upstreamDurationMs >= 0 ? Math.round(ctx.upstreamDurationMs * 100) / 100 : undefined,
        subject: ctx.subject ?? undefined,
        deny_reason: deny?.reason,
        deny_filter: deny?.filter,
        reported: reported ?? undefined,
      });
    }
    if (ctx.audit !== null) {
      const outcome = auditOutcome(ctx, status);
      this.#metrics.auditEvents.inc({ action: ctx.audit, outcome });
      if (this.#auditOn) {
        this.#audit.info({
          request_id: ctx.id,
          trace_id: traceId,
          action: ctx.audit,
          subject: ctx.subject,
          client_ip: ctx.clientIp,
          method: ctx.method,
          host: ctx.host,
          path: ctx.path,
          route: routeName,
          status,
          upstream_status: ctx.upstreamStatus || undefined,
          outcome,
          reason: deny?.reason,
          filter: deny?.filter,
          reported: reported ?? undefined,
        });
      }
    }
  }
}
