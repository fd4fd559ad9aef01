// Metrics (always on) and the access log written to a file, tracing off: what every production request
// pays for observability. Target: >= 0.9x Portcullis passthrough in the same run.
import { join } from 'node:path';
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'observability-metrics-log',
  description: 'Prometheus metrics + one JSON access-log line per request to a file; tracing off',
  policy: (ctx) => passthroughPolicy(ctx.upstreamUrl, { log: `{ access: "${join(ctx.dir, 'access.log')}", audit: off, error: stderr, level: warn }` }),
  env: () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' }),
  target: { atLeast: 0.9, note: 'metrics + access log vs passthrough (issue 7)' },
};
