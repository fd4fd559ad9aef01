// Standalone ingress with the per-route work a legacy app needs: an IP allow list, a prefix replaced and
// the upstream Host set. Compared with the plain passthrough in the same run.
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'ingress-rewrite-ip-rules',
  description: 'IP allow list + prefix replace + upstream Host on every request',
  policy: (ctx) =>
    passthroughPolicy(ctx.upstreamUrl, {
      route: `ip_rules: { allow: [127.0.0.0/8, "::1"] }
rewrite: { add_prefix: /legacy, host: legacy.internal }`,
    }),
  target: { atLeast: 0.9, note: 'per-route ingress filters' },
};
