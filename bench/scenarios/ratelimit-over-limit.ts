// 90% of requests over their limit: the abuser's key is refused from the local over-limit cache without
// a Redis round trip (and without forwarding); the other 10% go to a route whose limit is never hit.
import { countRedisCommands } from '../redis-commands.ts';
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'ratelimit-over-limit',
  description: '90% of requests over a per-IP limit (denied from the local cache), 10% allowed through Redis',
  policy: (ctx) => `version: 1
listeners: [{ address: "\${LISTEN}" }]
admin: { address: "\${ADMIN}" }
log: { access: off }
upstreams:
  app: { url: "${ctx.upstreamUrl}", max_connections: 64 }
rate_limits:
  store: { redis: "${ctx.redisUrl}", key_prefix: "bench:rl:${Date.now()}:", on_redis_failure: deny }
  tight: { key: client_ip, limit: 10, window: 1h }
  loose: { key: client_ip, limit: 1000000000, window: 1s }
routes:
  - name: limited
    match: { path_prefix: /limited }
    upstream: app
    rate_limit: tight
  - name: ok
    match: { path_prefix: / }
    upstream: app
    rate_limit: loose
`,
  load: () => ({
    requests: [
      ...Array.from({ length: 9 }, () => ({ method: 'GET' as const, path: '/limited' })),
      { method: 'GET' as const, path: '/ok' },
    ],
  }),
  setup: (ctx) => countRedisCommands('ratelimit-over-limit', ctx.redisUrl, ctx.dir),
  target: { atLeast: 1, note: 'faster than passthrough: 90% denied locally; about 0.1 Redis commands per request' },
};
