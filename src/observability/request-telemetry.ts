// End-of-request telemetry: metrics by route name (never raw paths, so cardinality stays bounded) and one
// access-log line; audited routes also write an audit line.
import type { Logger } from 'pino';
import type { RequestContext } from '../proxy/context.ts';
import type { Metrics } from './metrics.ts';

const STATUS_CLASS = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

export function statusClass(status: number): string {
  return STATUS_CLASS[Math.floor(status / 100)] ?? 'other';
}

export class RequestTelemetry {
  readonly #metrics: Metrics;
  readonly #access: Logger;
  readonly #audit: Logger;
  readonly #accessOn: boolean;

  constructor(metrics: Metrics, access: Logger, audit: Logger) {
    this.#metrics = metrics;
    this.#access = access;
    this.#audit = audit;
    this.#accessOn = access.isLevelEnabled('info');
  }

  onRequestEnd(ctx: RequestContext): void {
    const status = ctx.status === 0 ? 499 : ctx.status;
    const route = ctx.route?.name ?? 'none';
    const seconds = (performance.now() - ctx.startTime) / 1000;
    const labels = { route, method: ctx.method, status_class: statusClass(status) };
    this.#metrics.requests.inc(labels);
    this.#metrics.requestDuration.observe(labels, seconds);
    if (ctx.deny !== null) this.#metrics.denies.inc({ route, filter: ctx.deny.filter, reason: ctx.deny.reason });
    if (this.#accessOn) {
      this.#access.info({
        request_id: ctx.id,
        client_ip: ctx.clientIp,
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        route,
        status,
        duration_ms: Math.round(seconds * 100_000) / 100,
        upstream_status: ctx.upstreamStatus || undefined,
        subject: ctx.subject ?? undefined,
        deny_reason: ctx.deny?.reason,
        deny_filter: ctx.deny?.filter,
      });
    }
    if (ctx.audit !== null) {
      this.#audit.info({
        request_id: ctx.id,
        action: ctx.audit,
        subject: ctx.subject,
        client_ip: ctx.clientIp,
        method: ctx.method,
        path: ctx.path,
        route,
        status,
        outcome: ctx.deny !== null ? 'denied' : status >= 400 ? 'failed' : 'succeeded',
        reason: ctx.deny?.reason,
      });
    }
  }
}
