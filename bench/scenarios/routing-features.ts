// Issue 15's routing additions on the request path: the passthrough reference plus a glob route, a
// direct answer and a virtual host. The load still takes the reference's catch-all route, so the ratio is
// what the router pays for carrying the new kinds of routes (globs are tried on a host only when exact
// paths missed; the virtual host is another host in the same router).
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'routing-features',
  description: 'passthrough + a glob route (/files/**/*.png), a direct answer (/internal → 403) and a virtual host (admin.example.com)',
  policy: (ctx) =>
    passthroughPolicy(ctx.upstreamUrl).replace(
      'routes:\n',
      `hosts:
  - names: [admin.example.com]
    routes:
      - name: admin-all
        match: { path_prefix: / }
        upstream: app
routes:
  - name: images
    match: { path_glob: "/files/**/*.png", methods: [GET, HEAD] }
    upstream: app
  - name: internal
    match: { path_prefix: /internal }
    respond: { status: 403, reason: internal_only }
`,
    ),
  target: { atLeast: 0.97, note: 'issue 15: a glob route, a direct answer and a virtual host cost under 3%' },
};
