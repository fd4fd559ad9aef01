// What the core hands to filters at compile time: loggers, metrics and (when on) tracing. Filters never
// import the observability modules; they see these interfaces, which observability/ implements.
import type { Logger } from 'pino';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HeaderMap, RequestContext } from './context.ts';

/**
 * The metrics registry as filters and upstreams use it: get-or-create a metric at compile time (reloads
 * reuse it) and keep its pre-bound children for the request path. `observability/metrics.ts` implements it.
 */
export interface MetricsRegistry {
  readonly registry: Registry;
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L>;
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], aggregator?: 'sum' | 'max' | 'min' | 'average'): Gauge<L>;
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets?: number[]): Histogram<L>;
}

/** A span a filter opened for its own I/O (forward-auth call, Redis script...). */
export interface ChildSpan {
  setAttribute(key: string, value: string | number | boolean): void;
  /** Writes `traceparent` (and `tracestate`) for this span into headers of an outgoing request. */
  inject(headers: HeaderMap): void;
  /** Ends the span; an `errorType` (a stable reason code, never a message) marks it failed. */
  end(errorType?: string): void;
}

/**
 * The tracing API filters get. Take it at compile time (`const tracing = env.telemetry.tracing ?? null`)
 * and branch on null: when tracing is off nothing is allocated per request.
 */
export interface TracingApi {
  /** A child of the request's server span (a no-op span when the request is not traced). */
  child(ctx: RequestContext, name: string, attributes?: Record<string, string | number | boolean>): ChildSpan;
  /** Trace id of the request, when traced. */
  traceId(ctx: RequestContext): string | undefined;
}

export const NOOP_CHILD_SPAN: ChildSpan = Object.freeze({
  setAttribute() {},
  inject() {},
  end() {},
});

/** `M` is the concrete registry for the server, which also records the gateway's own metrics. */
export interface Telemetry<M extends MetricsRegistry = MetricsRegistry> {
  /** The application/error log. */
  readonly log: Logger;
  /** The audit log: one line per audited request. */
  readonly audit: Logger;
  readonly metrics: M;
  /** Tracing, or null/absent when off (the default). */
  readonly tracing?: TracingApi | null;
}
