// Standalone ingress: passthrough balanced over three targets (round robin, passive health and the retry
// budget on), against the one-target passthrough in the same run. The three targets are the harness's one
// upstream reached through three separate pools, so what is measured is the cost of balancing and health
// bookkeeping, not a difference between backends.
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'ingress-three-targets',
  description: 'Passthrough to an upstream of 3 targets (round robin, passive health, retries) vs 1',
  policy: (ctx) => `version: 1
listeners: [{ address: "\${LISTEN}" }]
admin: { address: "\${ADMIN}" }
log: { access: off }
upstreams:
  app:
    targets: ["${ctx.upstreamUrl}", "${ctx.upstreamUrl}", "${ctx.upstreamUrl}"]
    balance: round_robin
    max_connections: 64
    health: { failures: 5, ejection: 10s }
    retries: { attempts: 1 }
routes:
  - name: bench
    match: { path_prefix: / }
    upstream: app
`,
  target: { atLeast: 0.95, note: 'issue 10: passthrough to 3 targets versus 1 in the same run' },
};
