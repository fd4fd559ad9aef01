// Refusal limits: a `rate_limits` entry with `count: refused` budgets the requests an identity filter
// refused (token guessing, credential stuffing) per key (client IP by default), and a client over its
// budget gets 429 `too_many_refusals` before anything more of it is verified. The check runs before auth
// and only looks (a GCRA cost-0 peek); the response hook spends one unit when the answer is an identity
// refusal. Same limits, store, Redis failure modes and metrics as every rate limit (rate-limit.ts).
import type { Counter } from 'prom-client';
import type { RequestContext, ResponseHead } from '../contract/context.ts';
import type { Decision } from '../ratelimit/limiter.ts';
import { AMBIGUOUS_KEY, keyValue, rateLimitsOf, seconds, withBodyFields, type CompiledLimit } from './rate-limit.ts';
import { deny, defineFilter, type Verdict } from '../contract/filter.ts';

/**
 * The filters whose 401/403 is a refusal of who the client is or what it may do: the auth providers and
 * authorize. CSRF, CORS, body limits and the gateway's own answers are not: nothing was guessed there.
 */
const IDENTITY_FILTERS: ReadonlySet<string> = new Set(['jwt', 'api_key', 'forward_auth', 'oidc', 'client_cert', 'authorize']);

/** Whether this answer spends a unit of the route's refusal budgets. */
export function isIdentityRefusal(ctx: RequestContext, status: number): boolean {
  return (status === 401 || status === 403) && ctx.deny !== null && IDENTITY_FILTERS.has(ctx.deny.filter);
}

const DETAIL = 'too many refused requests from this client; retry after the time in Retry-After';

interface LimitChildren {
  allowed: Record<Decision['source'], Counter.Internal>;
  limited: Record<Decision['source'], Counter.Internal>;
  report: Record<Decision['source'], Counter.Internal>;
  spent: Counter.Internal;
}

const SOURCES = ['redis', 'memory', 'cache', 'local', 'unavailable'] as const;

export const refusalLimit = defineFilter<undefined, string[], undefined>({
  name: 'refusal_limit',
  reasons: ['too_many_refusals', 'ratelimit_unavailable', 'ambiguous_body_field'],
  stage: 'route',
  // The route's `rate_limit` list names these limits too; rate-limit.ts owns its schema and reports
  // unknown names, so this module only reads it.
  routeKey: 'rate_limit',
  compile({ config, routeName }, env) {
    if (config === undefined) return null;
    const shared = rateLimitsOf(env);
    if (shared === null) return null;
    const limits: CompiledLimit[] = [];
    for (const name of config) {
      const l = shared.limits.get(name);
      if (l !== undefined && l.refused && !limits.includes(l)) limits.push(l);
    }
    if (limits.length === 0) return null;
    const limiter = shared.limiter;
    const routeKey = keyValue(routeName); // the route as a key part, as rate-limit.ts makes it
    const spentTotal = env.telemetry.metrics.counter('portcullis_rate_limit_refusals_total', // METRIC_NAMES.rateLimitRefusals
      'Identity refusals (401/403 of jwt, api_key, forward_auth, oidc, authorize) spent against count: refused limits, by route and limit.', ['route', 'limit']);
    const children: LimitChildren[] = limits.map((l) => {
      const by = (decision: string) => Object.fromEntries(SOURCES.map((source) => [source, shared.decisionsTotal.labels({ route: routeName, limit: l.name, decision, source })])) as LimitChildren['allowed'];
      return { allowed: by('allowed'), limited: by('limited'), report: by('report'), spent: spentTotal.labels({ route: routeName, limit: l.name }) };
    });

    const finish = (ds: readonly (Decision | null)[]): Verdict => {
      let denied: Decision | null = null;
      let retryMs = 0;
      for (let i = 0; i < limits.length; i++) {
        const d = ds[i];
        if (d === null || d === undefined) continue;
        const c = children[i]!;
        if (d.allowed) c.allowed[d.source].inc();
        else if (!limits[i]!.enforce) c.report[d.source].inc();
        else {
          c.limited[d.source].inc();
          if (denied === null || d.source === 'unavailable') denied = d;
          if (d.retryAfterMs > retryMs) retryMs = d.retryAfterMs;
        }
      }
      if (denied === null) return undefined;
      if (denied.source === 'unavailable') return deny(503, 'ratelimit_unavailable', 'the rate-limit store is unavailable', { 'retry-after': '1' });
      return deny(429, 'too_many_refusals', DETAIL, { 'retry-after': String(seconds(retryMs)) });
    };

    const decide = (ctx: RequestContext): Verdict | Promise<Verdict> => {
      const now = Date.now();
      const ds: (Decision | null | Promise<Decision>)[] = [];
      let pending = false;
      for (const l of limits) {
        const key = l.key(ctx, routeKey);
        const d = key === null ? null : limiter.peek(key, now, l.rate);
        if (d instanceof Promise) pending = true;
        ds.push(d);
      }
      if (!pending) return finish(ds as (Decision | null)[]);
      return Promise.all(ds).then(finish);
    };

    // Spent when the answer is written: the refusal is known, and the unit is counted (Redis pipelines it
    // ahead of the client's next request on the same connection) before the client can read the answer.
    const onResponse = (ctx: RequestContext, head: ResponseHead): void => {
      if (!isIdentityRefusal(ctx, head.status)) return;
      const now = Date.now();
      for (let i = 0; i < limits.length; i++) {
        const l = limits[i]!;
        const key = l.key(ctx, routeKey);
        if (key === null || key === AMBIGUOUS_KEY) continue;
        children[i]!.spent.inc();
        const d = limiter.check(key, now, l.rate);
        if (d instanceof Promise) d.catch(() => undefined); // the limiter turns store failures into decisions
      }
    };

    const readsBody = limits.some((l) => l.readsBody);

    return {
      name: 'refusal_limit',
      onRequest: readsBody ? withBodyFields(limits, routeKey, decide) : decide,
      onResponse,
      readsBody,
      explainable: false, // asks the store
      describe: () => ({
        limits: limits.map((l) => ({ name: l.name, count: 'refused', limit: l.rate.limit, window_ms: l.rate.windowMs, burst: l.rate.burst, enforce: l.enforce })),
        store: shared.storeDescription,
        on_redis_failure: limiter.mode,
      }),
    };
  },
});
