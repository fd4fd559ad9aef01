// Rate limits: named limits under `rate_limits`, referenced by routes (`rate_limit: [per_ip, per_user]`,
// all must pass). The key of each limit compiles to accessor functions and a precomputed prefix; the
// store (Redis, or in process) is built once per policy by `setup`; the failure mode is a branch chosen
// there. Every response of a limited route carries the IETF RateLimit-Policy and RateLimit fields.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Counter } from 'prom-client';
import {
  array, boolean, duration, integer, nearest, object, oneOf, optional, string, withDefault,
  type Infer, type Issue, type Path, type Schema,
} from '../config/schema.ts';
import { addressToBigInt } from '../config/cidr.ts';
import { reportDeny, type RequestContext } from '../contract/context.ts';
import { cookieValues } from '../proxy/cookie.ts';
import { Limiter, type Decision, type DecisionSource } from '../ratelimit/limiter.ts';
import { RedisStore, describeTarget, parseRedisUrl } from '../ratelimit/redis.ts';
import { makeRate, type Rate } from '../contract/rate-limit.ts';
import { providerOfRoute } from './auth.ts';
import { AMBIGUOUS, BODY_FIELD_CAP, bodyField } from './body-fields.ts';
import { deny, defineFilter, type CompileEnv, type Verdict } from '../contract/filter.ts';

const NAME = /^[A-Za-z0-9_-]+$/;
const KEY_PART = /^(client_ip|route|token|subject|credential|claim:[A-Za-z0-9_.:-]+|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|form:[A-Za-z0-9_.:\[\]-]{1,128}|json:[A-Za-z0-9_:-]{1,128})$/;

const rateSchema = {
  limit: integer({ min: 1, description: 'Requests allowed per window (sustained rate limit/window).' }),
  window: duration({ min: 1, description: 'The window of `limit`, e.g. 1s, 1m, 1h.' }),
  burst: optional(integer({ min: 1, description: 'Requests that may arrive at once from an idle client; default: limit.' })),
};

const limitSchema = object(
  {
    key: withDefault(
      array(string({ pattern: KEY_PART, patternName: 'key (client_ip, route, token, subject, credential, claim:NAME, header:NAME, form:NAME, json:NAME)' }), {
        single: true,
        minItems: 1,
        description: 'What one bucket counts: client_ip, route, token (the bearer token, from Authorization or the cookie), subject (the authenticated subject, JWT or forward auth), credential (the API key or client certificate used: each has its own bucket, and an API key with its own `rate_limit` is counted at that rate), claim:NAME, header:NAME, form:NAME (a field of a urlencoded body), json:NAME (a top-level string member of a JSON body; body fields are read from the first 16 KiB, the body then forwarded unchanged; a field sent twice is 400 ambiguous_body_field), or a list of them combined.',
      }),
      ['client_ip'],
    ),
    ...rateSchema,
    ipv6_prefix: withDefault(integer({ min: 1, max: 128, description: 'IPv6 clients are grouped by this prefix length (one /64 is one subscriber).' }), 64),
    ipv4_prefix: withDefault(integer({ min: 1, max: 32, description: 'IPv4 clients are grouped by this prefix length.' }), 32),
    token_cookie: withDefault(string({ description: 'Cookie read by the `token` key when there is no Authorization: Bearer header.' }), 'access_token'),
    on_missing_key: withDefault(oneOf(['client_ip', 'skip'] as const, { description: 'When a subject, claim, header, token or body field of the key is absent (a body field also when the body is of another type, encoded, longer than 16 KiB, or the JSON value is not a string): count the request by client IP instead, or skip this limit.' }), 'client_ip'),
    mode: withDefault(oneOf(['enforce', 'report'] as const, { description: 'report: count and measure, never deny (to roll out a limit).' }), 'enforce'),
    count: withDefault(oneOf(['requests', 'refused'] as const, {
      description: 'What spends the budget: every request, or only the requests an identity filter refused (jwt, api_key, forward_auth, oidc, authorize with 401/403; token guessing, credential stuffing). A `refused` limit is checked before auth: a client over it gets 429 too_many_refusals before anything more of it is verified.',
    }), 'requests'),
  },
  {
    description: 'A named limit.',
    check(l, path, issues) {
      if (l.burst !== undefined && l.burst > l.limit * 1000) issues.push({ path: [...path, 'burst'], message: 'burst is more than 1000 times the limit' });
      if (l.count === 'refused') {
        // Checked before auth, counted when auth said no: there is no verified identity either time.
        const i = l.key.findIndex((k) => k === 'subject' || k === 'credential' || k.startsWith('claim:'));
        if (i !== -1) issues.push({ path: [...path, 'key', i], message: `a count: refused limit cannot be keyed on ${l.key[i]}: a refused request has no verified identity (use client_ip, route, token, header:NAME or a body field)` });
      }
    },
  },
);

const storeSchema = object(
  {
    redis: optional(string({ description: 'Redis URL: redis://, rediss:// (TLS), redis+sentinel://h1,h2/MASTER, redis+cluster://h1,h2. Absent: in process.' })),
    on_redis_failure: withDefault(oneOf(['local', 'deny', 'allow'] as const, { description: 'While Redis fails: local (count in process), deny (503 ratelimit_unavailable), allow (no limit).' }), 'local'),
    local_limit: optional(object(rateSchema, { description: 'The in-process limit `local` applies while Redis fails (per process); default: each limit\'s own.' })),
    required: withDefault(boolean({ description: '/readyz reports not ready while Redis fails.' }), false),
    allow_acknowledged: withDefault(boolean({ description: 'Production accepts `on_redis_failure: allow` only with this set.' }), false),
    connect_timeout: withDefault(duration({ min: 10, description: 'Time to connect to Redis.' }), 1000),
    command_timeout: withDefault(duration({ min: 1, description: 'Longest a request waits on Redis before the failure mode applies.' }), 100),
    probe_interval: withDefault(duration({ min: 10, description: 'While Redis fails, how often it is probed (PING) to return to it.' }), 200),
    key_prefix: withDefault(string({ pattern: /^[A-Za-z0-9_.:-]{0,64}$/, patternName: 'key prefix (letters, digits, _ . : -)', description: 'Prefix of every Redis key.' }), 'portcullis:rl:'),
    max_local_keys: withDefault(integer({ min: 100, description: 'Most buckets kept in process (least recently used evicted).' }), 100_000),
  },
  { description: 'Where counts are kept and what happens when Redis fails.' },
);

type LimitConfig = Infer<typeof limitSchema>;
type StoreConfig = Infer<typeof storeSchema>;

export interface RateLimitsConfig {
  store: StoreConfig;
  limits: Record<string, LimitConfig>;
}

/** `rate_limits`: the reserved key `store`, every other key a named limit. */
const rateLimitsSchema: Schema<RateLimitsConfig> = {
  type: 'mapping',
  description: 'Named rate limits (any name but `store`) and their store.',
  optional: true,
  defaultValue: undefined,
  parse(value: unknown, path: Path, issues: Issue[]) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      issues.push({ path, message: 'expected a mapping of limit names to limits, and an optional "store"' });
      return undefined;
    }
    const input = value as Record<string, unknown>;
    let ok = true;
    const store = storeSchema.parse(input.store, [...path, 'store'], issues);
    if (!store) ok = false;
    const limits: Record<string, LimitConfig> = Object.create(null) as Record<string, LimitConfig>;
    for (const [name, entry] of Object.entries(input)) {
      if (name === 'store') continue;
      if (!NAME.test(name)) {
        issues.push({ path: [...path, name], message: `invalid limit name "${name}": use letters, digits, "_" and "-"`, atKey: true });
        ok = false;
        continue;
      }
      const parsed = limitSchema.parse(entry, [...path, name], issues);
      if (!parsed) ok = false;
      else limits[name] = parsed;
    }
    return ok ? { store: store!, limits } : undefined;
  },
  doc: () => ({
    type: 'mapping',
    description: 'Named rate limits (any name but `store`) and their store.',
    fields: { store: { ...storeSchema.doc(), required: false }, '<name>': limitSchema.doc() },
  }),
};

const routeLimitSchema = array(string({ pattern: NAME, patternName: 'limit name' }), { single: true, minItems: 1, description: 'Names of limits under `rate_limits`; all must pass.' });

/** One limit, compiled: its rate, its key function, its header item, its metric children. */
export interface CompiledLimit {
  readonly name: string;
  readonly rate: Rate;
  readonly enforce: boolean;
  /** The bucket key for this request, or null to skip the limit. */
  readonly key: (ctx: RequestContext, routeName: string) => string | null;
  readonly policyItem: string;
  /** Keyed on `credential`: the request's credential rate (an API key's own `rate_limit`) replaces `rate`. */
  readonly credentialRate: boolean;
  /** `count: refused`: checked before auth and spent by refusals (refusal-limit.ts), skipped here. */
  readonly refused: boolean;
  /** A key part is a body field: the body's first bytes are read before the key is made. */
  readonly readsBody: boolean;
}

/** What a key function returns when a body field of the key was sent twice: the request is refused. */
export const AMBIGUOUS_KEY = '\u0000ambiguous';

type DecisionChildren = Record<DecisionSource, { allowed: Counter.Internal; limited: Counter.Internal; report: Counter.Internal }>;
const SOURCES: readonly DecisionSource[] = ['redis', 'memory', 'cache', 'local', 'unavailable'];

export interface Shared {
  limiter: Limiter;
  limits: Map<string, CompiledLimit>;
  storeDescription: string;
  decisionsTotal: Counter<'route' | 'limit' | 'decision' | 'source'>;
}

/** A value safe to put in a key as is, or its hash (long, or with separators): bounded key size. */
const PLAIN = /^[A-Za-z0-9._~@+=-]{1,64}$/;
export function keyValue(v: string): string {
  return PLAIN.test(v) ? 'v' + v : 'h' + createHash('sha256').update(v).digest('base64url').slice(0, 22);
}

function ipKey(v4Bits: number, v6Bits: number): (ip: string) => string {
  const v6Shift = BigInt(128 - v6Bits);
  const v4Shift = BigInt(32 - v4Bits);
  return (ip) => {
    if (!ip.includes(':')) {
      if (v4Bits === 32) return ip;
      const family = isIP(ip);
      if (family !== 4) return keyValue(ip);
      const n = addressToBigInt(ip)! & 0xffffffffn;
      return (n >> v4Shift).toString(16) + '/' + v4Bits;
    }
    const n = addressToBigInt(ip);
    if (n === undefined) return keyValue(ip);
    return (n >> v6Shift).toString(16) + '/' + v6Bits;
  };
}

function headerValue(ctx: RequestContext, name: string): string | null {
  const v = ctx.requestHeaders[name];
  if (v === undefined) return null;
  const s = Array.isArray(v) ? v.join(',') : v;
  return s === '' ? null : s;
}

/** The token of the request: Authorization: Bearer, else the cookie. The same token counts once however sent. */
function tokenOf(ctx: RequestContext, cookie: string): string | null {
  const auth = ctx.requestHeaders.authorization;
  if (auth !== undefined && auth.length > 7 && auth.slice(0, 7).toLowerCase() === 'bearer ') return auth.slice(7).trim() || null;
  const values = cookieValues(ctx.requestHeaders.cookie, cookie);
  return values.length === 0 || values[0] === '' ? null : values[0]!;
}

type Part = (ctx: RequestContext, routeName: string) => string | null;

function compilePart(spec: string, cfg: LimitConfig): Part {
  if (spec === 'client_ip') {
    const ip = ipKey(cfg.ipv4_prefix, cfg.ipv6_prefix);
    return (ctx) => 'i' + ip(ctx.clientIp);
  }
  if (spec === 'route') return (_ctx, route) => 'r' + route;
  if (spec === 'token') {
    const cookie = cfg.token_cookie;
    return (ctx) => {
      const t = tokenOf(ctx, cookie);
      return t === null ? null : 't' + createHash('sha256').update(t).digest('base64url').slice(0, 22);
    };
  }
  if (spec === 'subject') {
    return (ctx) => {
      const v = ctx.subject;
      return v === null || v === '' ? null : 's' + keyValue(v);
    };
  }
  if (spec === 'credential') {
    return (ctx) => {
      const c = ctx.credential;
      return c === null ? null : 'k' + keyValue(c.id);
    };
  }
  if (spec.startsWith('claim:')) {
    const claim = spec.slice(6);
    return (ctx) => {
      const v = ctx.claims?.[claim];
      if (v === undefined || v === null || v === '') return null;
      return 'c' + keyValue(typeof v === 'string' ? v : JSON.stringify(v));
    };
  }
  if (spec.startsWith('form:') || spec.startsWith('json:')) {
    const kind = spec.startsWith('form:') ? 'form' : 'json';
    const field = spec.slice(5);
    const tag = kind === 'form' ? 'f' : 'j';
    return (ctx) => {
      const v = bodyField(ctx, kind, field);
      return v === null ? null : v === AMBIGUOUS ? AMBIGUOUS_KEY : tag + keyValue(v);
    };
  }
  const header = spec.slice(7).toLowerCase();
  return (ctx) => {
    const v = headerValue(ctx, header);
    return v === null ? null : 'h' + keyValue(v);
  };
}

/**
 * The key function: `<prefix>{<limit>:<part>|<part>}`. The braces are a Redis Cluster hash tag around
 * the whole bucket identity: the script's one key always has one slot, and buckets spread over masters.
 */
function compileKey(name: string, cfg: LimitConfig, prefix: string): CompiledLimit['key'] {
  const head = `${prefix}{${name}:`;
  const parts = cfg.key.map((spec) => compilePart(spec, cfg));
  const byIp = compilePart('client_ip', cfg);
  const missing = cfg.on_missing_key === 'client_ip' ? (ctx: RequestContext, route: string) => head + '~' + byIp(ctx, route) + '}' : () => null;
  if (parts.length === 1) {
    const only = parts[0]!;
    return (ctx, route) => {
      const v = only(ctx, route);
      return v === null ? missing(ctx, route) : v === AMBIGUOUS_KEY ? v : head + v + '}';
    };
  }
  return (ctx, route) => {
    let key = head;
    let absent = false;
    for (let i = 0; i < parts.length; i++) {
      const v = parts[i]!(ctx, route);
      if (v === AMBIGUOUS_KEY) return v; // refused whatever the other parts are
      if (v === null) absent = true;
      else if (!absent) key += i === 0 ? v : '|' + v;
    }
    return absent ? missing(ctx, route) : key + '}';
  };
}

function unreadable(file: string): string | null {
  try {
    readFileSync(file);
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'unreadable';
  }
}

export function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

// What `setup` built for the policy being compiled, for the refusal-limit filter (compiled before auth,
// from the same limits and store).
const sharedOf = new WeakMap<CompileEnv, Shared>();

/** The rate limits of the policy `env` compiles, or null when it has none. */
export function rateLimitsOf(env: CompileEnv): Shared | null {
  return sharedOf.get(env) ?? null;
}

function setup(config: RateLimitsConfig | undefined, env: CompileEnv): Shared | null {
  if (config === undefined) return null;
  const store = config.store;
  const log = env.telemetry.log;
  const metrics = env.telemetry.metrics;
  const path = ['rate_limits', 'store'];
  if (env.mode === 'production' && store.on_redis_failure === 'allow' && !store.allow_acknowledged) {
    env.problem([...path, 'on_redis_failure'], 'production: on_redis_failure: allow lets all traffic through unlimited while Redis fails; set allow_acknowledged: true to accept that');
  }

  const decisionsTotal = metrics.counter('portcullis_rate_limit_decisions_total', // METRIC_NAMES.rateLimitDecisions
    'Rate-limit decisions by route, limit, decision (allowed, limited, report) and source (redis, memory, cache, local, unavailable).', ['route', 'limit', 'decision', 'source']);
  const storeErrors = metrics.counter('portcullis_rate_limit_store_errors_total', // METRIC_NAMES.rateLimitStoreErrors
    'Rate-limit store commands that failed, by store, the failure mode then applied (fallback) and reason (timeout, disconnected...).', ['store', 'fallback', 'reason']);
  const storeUp = metrics.gauge('portcullis_rate_limit_store_up', 'Whether the rate-limit store answers (1) or the failure mode applies (0).', ['store'], 'min');

  let redis: RedisStore | null = null;
  let storeDescription = 'memory';
  if (store.redis !== undefined && store.redis !== '') {
    const target = parseRedisUrl(store.redis);
    const caProblem = typeof target === 'string' || target.ca === undefined ? null : unreadable(target.ca);
    if (typeof target === 'string') {
      env.problem([...path, 'redis'], `invalid Redis URL: ${target}`);
    } else if (caProblem !== null) {
      env.problem([...path, 'redis'], `cannot read the CA file of the Redis URL (?ca=${target.ca}): ${caProblem}`);
    } else {
      if (target.password) env.secrets.add(target.password);
      if (target.kind === 'sentinel' && target.sentinelPassword) env.secrets.add(target.sentinelPassword);
      storeDescription = describeTarget(target);
      const label = target.kind === 'single' ? 'redis' : `redis_${target.kind}`;
      const failures = new Map<string, Counter.Internal>();
      const up = storeUp.labels({ store: label });
      // For the admin dashboard: the state and since when (written on transitions only).
      const state = { up: false, since: Date.now(), reason: 'connecting' };
      redis = new RedisStore(target, {
        connectTimeoutMs: store.connect_timeout,
        commandTimeoutMs: store.command_timeout,
        probeMs: store.probe_interval,
        onFailure(reason) {
          let c = failures.get(reason);
          if (c === undefined) failures.set(reason, (c = storeErrors.labels({ store: label, fallback: store.on_redis_failure, reason })));
          c.inc();
        },
        onStateChange(isUp, reason) {
          up.set(isUp ? 1 : 0);
          state.up = isUp;
          state.since = Date.now();
          state.reason = reason;
          if (isUp) log.info({ store: storeDescription, reason }, reason === 'connected' ? 'rate-limit store: Redis connected' : 'rate-limit store: Redis answers again; limits are shared again');
          else log.warn({ store: storeDescription, reason, on_redis_failure: store.on_redis_failure }, `rate-limit store: Redis unavailable; on_redis_failure: ${store.on_redis_failure} applies until it answers`);
        },
      });
      env.onReady(redis.ready());
      env.status?.('rate_limit_store', () => ({
        kind: 'rate_limit_store',
        store: storeDescription,
        up: state.up,
        since: state.since,
        reason: state.reason,
        on_redis_failure: store.on_redis_failure,
        in_force: state.up ? 'redis' : store.on_redis_failure,
        required: store.required,
      }));
      if (store.required) {
        const r = redis;
        env.readiness('ratelimit_store', () => (r.available ? true : 'redis unavailable'));
      }
    }
  }
  if (redis === null) env.status?.('rate_limit_store', () => ({ kind: 'rate_limit_store', store: 'memory', up: true, in_force: 'memory', on_redis_failure: store.on_redis_failure }));
  const limiter = new Limiter({
    redis,
    mode: store.on_redis_failure,
    fallbackRate: store.local_limit ? makeRate(store.local_limit.limit, store.local_limit.window, store.local_limit.burst) : null,
    maxLocalKeys: store.max_local_keys,
  });
  env.onClose(() => limiter.close());

  const limits = new Map<string, CompiledLimit>();
  for (const [name, cfg] of Object.entries(config.limits)) {
    const rate = makeRate(cfg.limit, cfg.window, cfg.burst);
    limits.set(name, {
      name,
      rate,
      enforce: cfg.mode === 'enforce',
      key: compileKey(name, cfg, store.key_prefix),
      policyItem: `"${name}";q=${cfg.limit};w=${seconds(cfg.window)}`,
      credentialRate: cfg.key.includes('credential'),
      refused: cfg.count === 'refused',
      readsBody: cfg.key.some((k) => k.startsWith('form:') || k.startsWith('json:')),
    });
  }
  const shared = { limiter, limits, storeDescription, decisionsTotal };
  sharedOf.set(env, shared);
  return shared;
}

/** The rate a request is counted at: the limit's, or its credential's own on a limit keyed on `credential`. */
function rateOf(l: CompiledLimit, ctx: RequestContext): Rate {
  return l.credentialRate && ctx.credential !== null && ctx.credential.rate !== null ? ctx.credential.rate : l.rate;
}

const AMBIGUOUS_DETAIL = 'the request body names a field of the rate-limit key more than once';

/**
 * The request hook of limits keyed on body fields: reads the body's first bytes once (every limit of the
 * request shares them), refuses a body that names a key field twice before any limit counts, then decides.
 */
export function withBodyFields(limits: readonly CompiledLimit[], routeKey: string, decide: (ctx: RequestContext) => Verdict | Promise<Verdict>): (ctx: RequestContext) => Verdict | Promise<Verdict> {
  const reading = limits.filter((l) => l.readsBody);
  const checked = (ctx: RequestContext): Verdict | Promise<Verdict> => {
    for (const l of reading) if (l.key(ctx, routeKey) === AMBIGUOUS_KEY) return deny(400, 'ambiguous_body_field', AMBIGUOUS_DETAIL);
    return decide(ctx);
  };
  return (ctx) => {
    const body = ctx.body;
    if (body !== null && body.current === null) return body.prefix(BODY_FIELD_CAP).then(() => checked(ctx));
    return checked(ctx);
  };
}

const RATE_LIMITED_DETAIL = 'too many requests; retry after the time in Retry-After';

export const rateLimit = defineFilter<RateLimitsConfig, string[], Shared | null>({
  name: 'rate_limit',
  reasons: ['rate_limited', 'ratelimit_unavailable', 'ambiguous_body_field'],
  stage: 'route',
  globalKey: 'rate_limits',
  globalSchema: rateLimitsSchema,
  routeKey: 'rate_limit',
  routeSchema: routeLimitSchema,
  setup,
  compile({ config, shared, routeName, routePath }, env) {
    if (config === undefined) return null;
    if (shared === null) {
      env.problem([...routePath, 'rate_limit'], 'no rate_limits are defined: add a top-level rate_limits mapping');
      return null;
    }
    const limits: CompiledLimit[] = [];
    config.forEach((name, i) => {
      const l = shared.limits.get(name);
      if (!l) {
        const near = nearest(name, [...shared.limits.keys()]);
        env.problem([...routePath, 'rate_limit', i], `unknown rate limit "${name}"${near ? ` (did you mean "${near}"?)` : ` (known: ${[...shared.limits.keys()].join(', ') || 'none'})`}`);
      } else if (l.refused) {
        // The refusal-limit filter (before auth) owns it; auth has been compiled by now, so it can be asked.
        if (providerOfRoute(env, routePath) === null) {
          env.problem([...routePath, 'rate_limit', i], `limit "${name}" counts the requests auth or authorize refuse (count: refused), but this route is not authenticated: nothing would ever be counted`);
        }
      } else if (!limits.includes(l)) limits.push(l);
    });
    if (limits.length === 0) return null;
    const limiter = shared.limiter;
    const policyHeader = limits.map((l) => l.policyItem).join(', ');
    const route = routeName;
    /** The route as a key part: computed once, hashed when it holds separators. */
    const routeKey = keyValue(routeName);
    const children: DecisionChildren[] = limits.map((l) => Object.fromEntries(SOURCES.map((source) => {
      const labels = (decision: string) => shared.decisionsTotal.labels({ route, limit: l.name, decision, source });
      return [source, { allowed: labels('allowed'), limited: labels('limited'), report: labels('report') }];
    })) as DecisionChildren);

    /** Headers, metrics and the verdict from the decisions, in limit order. */
    const finish = (ctx: RequestContext, ds: readonly (Decision | null)[]): Verdict => {
      let fields = '';
      let denied: Decision | null = null;
      let retryMs = 0;
      for (let i = 0; i < limits.length; i++) {
        const d = ds[i];
        if (d === null || d === undefined) continue;
        const l = limits[i]!;
        const c = children[i]![d.source];
        if (d.allowed) c.allowed.inc();
        else if (!l.enforce) {
          c.report.inc();
          reportDeny(ctx, 'rate_limit', d.source === 'unavailable' ? 'ratelimit_unavailable' : 'rate_limited');
        }
        else {
          c.limited.inc();
          if (denied === null || d.source === 'unavailable') denied = d;
          if (d.retryAfterMs > retryMs) retryMs = d.retryAfterMs;
        }
        if (d.counted) fields += (fields === '' ? '' : ', ') + `"${l.name}";r=${d.remaining};t=${seconds(d.resetMs)}`;
      }
      const headers = ctx.responseHeaders;
      headers['ratelimit-policy'] = policyHeader;
      if (fields !== '') headers.ratelimit = fields;
      if (denied === null) return undefined;
      if (denied.source === 'unavailable') return deny(503, 'ratelimit_unavailable', 'the rate-limit store is unavailable', { 'retry-after': '1' });
      return deny(429, 'rate_limited', RATE_LIMITED_DETAIL, { 'retry-after': String(seconds(retryMs)) });
    };

    const decide = limits.length === 1
      ? (ctx: RequestContext): Verdict | Promise<Verdict> => {
          const l = limits[0]!;
          const key = l.key(ctx, routeKey);
          if (key === null) {
            ctx.responseHeaders['ratelimit-policy'] = policyHeader;
            return undefined;
          }
          const d = limiter.check(key, Date.now(), rateOf(l, ctx));
          if (d instanceof Promise) return d.then((r) => finish(ctx, [r]));
          return finish(ctx, [d]);
        }
      : (ctx: RequestContext): Verdict | Promise<Verdict> => {
          const now = Date.now();
          const ds: (Decision | null | Promise<Decision>)[] = [];
          let pending = false;
          for (const l of limits) {
            const key = l.key(ctx, routeKey);
            const d = key === null ? null : limiter.check(key, now, rateOf(l, ctx));
            if (d instanceof Promise) pending = true;
            ds.push(d);
          }
          if (!pending) return finish(ctx, ds as (Decision | null)[]);
          return Promise.all(ds).then((resolved) => finish(ctx, resolved));
        };
    const readsBody = limits.some((l) => l.readsBody);

    return {
      name: 'rate_limit',
      onRequest: readsBody ? withBodyFields(limits, routeKey, decide) : decide,
      onResponse: null,
      readsBody,
      explainable: false, // a hit counts against the limit
      describe: () => ({
        limits: limits.map((l) => ({ name: l.name, limit: l.rate.limit, window_ms: l.rate.windowMs, burst: l.rate.burst, enforce: l.enforce })),
        store: shared.storeDescription,
        on_redis_failure: limiter.mode,
      }),
    };
  },
});

