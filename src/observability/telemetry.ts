// What the core hands to filters at compile time: loggers, metrics and (when on) tracing. Filters never
// import these modules.
import type { Logger } from 'pino';
import type { HeaderMap, RequestContext } from '../proxy/context.ts';
import type { Metrics } from './metrics.ts';

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

export interface Telemetry {
  /** The application/error log. */
  readonly log: Logger;
  /** The audit log: one line per audited request. */
  readonly audit: Logger;
  readonly metrics: Metrics;
  /** Tracing, or null/absent when off (the default). */
  readonly tracing?: TracingApi | null;
}
