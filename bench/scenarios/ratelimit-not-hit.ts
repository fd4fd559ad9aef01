// A per-IP limit in Redis that is never hit: every request costs one EVALSHA round trip.
import { countRedisCommands } from '../redis-commands.ts';
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'ratelimit-not-hit',
  description: 'per-IP limit in the real Redis, never reached: one EVALSHA per request',
  policy: (ctx) =>
    passthroughPolicy(ctx.upstreamUrl, {
      top: `rate_limits:
  store: { redis: "${ctx.redisUrl}", key_prefix: "bench:rl:${Date.now()}:", on_redis_failure: deny }
  per_ip: { key: client_ip, limit: 1000000000, window: 1s }`,
      route: 'rate_limit: per_ip',
    }),
  setup: (ctx) => countRedisCommands('ratelimit-not-hit', ctx.redisUrl, ctx.dir),
  target: { atLeast: 0.8, note: '>= 0.8x passthrough; about 1 Redis command per request' },
};
