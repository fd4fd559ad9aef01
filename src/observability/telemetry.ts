// What the core hands to filters at compile time: loggers and metrics. Filters never import these modules.
import type { Logger } from 'pino';
import type { Metrics } from './metrics.ts';

export interface Telemetry {
  /** The application/error log. */
  readonly log: Logger;
  /** The audit log: one line per audited request. */
  readonly audit: Logger;
  readonly metrics: Metrics;
}
