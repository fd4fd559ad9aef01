// Telemetry for CLI commands that compile a policy without serving it: nothing is logged.
import pino from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import type { Telemetry } from '../contract/telemetry.ts';

export function quietTelemetry(metrics: Metrics): Telemetry {
  const silent = pino({ level: 'silent' });
  return { log: silent, audit: silent, metrics };
}
