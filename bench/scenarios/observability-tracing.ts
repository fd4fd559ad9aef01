// Tracing on at 10% sampling (parent-based) to a local OTLP/HTTP receiver started in `setup`, plus metrics
// and the access log. The issue asks for the figure to be reported, with no target.
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

/** Fixed so that `policy` does not depend on the order the harness calls `setup` and `policy`. */
const RECEIVER_PORT = 14318;

export const scenario: Scenario = {
  name: 'observability-tracing',
  description: 'OTLP tracing at 10% sampling to a local receiver, metrics and access log on',
  async setup() {
    let spansBytes = 0;
    const server: Server = createServer((req, res) => {
      req.on('data', (c: Buffer) => (spansBytes += c.length));
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(RECEIVER_PORT, '127.0.0.1', () => resolve());
    });
    return async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (spansBytes === 0) process.stderr.write('observability-tracing: the receiver got no spans\n');
    };
  },
  policy: (ctx) =>
    passthroughPolicy(ctx.upstreamUrl, {
      log: `{ access: "${join(ctx.dir, 'access-tracing.log')}", audit: off, error: stderr, level: warn }`,
      top: `tracing:
  endpoint: http://127.0.0.1:${RECEIVER_PORT}
  sample_ratio: 0.1`,
    }),
  env: () => ({ OTEL_BSP_SCHEDULE_DELAY: '1000' }),
  target: { note: 'report only: tracing at 10% sampling (issue 7)' },
};
