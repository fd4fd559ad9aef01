// What the gateway tells request observers (telemetry, tracing) at the points of a request's life.
import type { RequestContext } from './context.ts';

/** The upstream a request is sent to, as observers see it. */
export interface ForwardedUpstream {
  readonly name: string;
  /** Scheme, host and port of the upstream as configured (no path). */
  readonly origin: string;
  readonly targets: readonly { readonly url: URL }[];
}

export interface RequestObserver {
  /** Called once per request, after the peer is identified and before any filter runs (tracing). */
  onRequestStart?(ctx: RequestContext): void;
  /** Called when the request is sent to `upstream`, after its headers are final (tracing). */
  onForward?(ctx: RequestContext, upstream: ForwardedUpstream): void;
  /** Called once per request when its response is finished or the client went away. */
  onRequestEnd(ctx: RequestContext): void;
}
