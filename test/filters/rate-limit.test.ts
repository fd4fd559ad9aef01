// The rate_limit filter compiled from YAML: verdict tables, keys, headers, failure modes, policy errors.
import { describe, expect, it } from 'vitest';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';
import { compileText, type CompiledPolicy } from '../../src/policy/compile.ts';
import { PolicyError } from '../../src/config/errors.ts';
import type { Deny } from '../../src/contract/filter.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { RequestContext } from '../../src/contract/context.ts';
import { freePort } from '../helpers/redis-server.ts';

const metrics = new Metrics({ defaultMetrics: false });
const telemetry = quietTelemetry(metrics);

const HEAD = `version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: "http://127.0.0.1:3000" } }
`;

function compile(body: string, env: NodeJS.ProcessEnv = {}): CompiledPolicy {
  return compileText(HEAD + body, 'policy.yaml', { telemetry }, env);
}

function problems(body: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    void compile(body, env).close();
  } catch (err) {
    if (err instanceof PolicyError) return err.message.split('\n');
    throw err;
  }
  return [];
}

interface Req {
  ip?: string;
  headers?: Record<string, string>;
  claims?: Record<string, unknown>;
  subject?: string;
}

/** Runs the route's chain once; returns the verdict and the headers the response would carry. */
async function run(policy: CompiledPolicy, routeName: string, req: Req = {}): Promise<{ deny: Deny | undefined; headers: Record<string, unknown> }> {
  const route = policy.routes.find((r) => r.name === routeName)!;
  const headers = Object.fromEntries(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const ctx = new RequestContext('GET', '1.1', headers, req.ip ?? '192.0.2.1', 'http', 0);
  ctx.clientIp = req.ip ?? '192.0.2.1';
  ctx.claims = req.claims ?? null;
  ctx.subject = req.subject ?? null;
  ctx.route = route;
  let deny: Deny | undefined;
  for (const hook of route.request ?? []) {
    deny = await hook(ctx);
    if (deny) break;
  }
  return { deny, headers: { ...ctx.responseHeaders, ...deny?.headers } };
}

async function count(policy: CompiledPolicy, route: string, n: number, req: Req = {}): Promise<number> {
  let allowed = 0;
  for (let i = 0; i < n; i++) if ((await run(policy, route, req)).deny === undefined) allowed++;
  return allowed;
}

const LIMITS = `rate_limits:
  per_ip: { key: client_ip, limit: 3, window: 1m }
  per_user: { key: claim:sub, limit: 2, window: 1h }
  per_token: { key: token, limit: 2, window: 1h }
  per_subject: { key: subject, limit: 2, window: 1h }
  per_tenant_route: { key: [header:X-Tenant, route], limit: 2, window: 1h }
  per_key_or_skip: { key: header:X-Api-Key, limit: 1, window: 1h, on_missing_key: skip }
  shadow: { key: client_ip, limit: 1, window: 1h, mode: report }
routes:
  - { name: a, match: { path: /a }, upstream: app, rate_limit: per_ip }
  - { name: b, match: { path: /b }, upstream: app, rate_limit: [per_ip] }
  - { name: user, match: { path: /user }, upstream: app, rate_limit: [per_user] }
  - { name: subject, match: { path: /subject }, upstream: app, rate_limit: [per_subject] }
  - { name: token, match: { path: /token }, upstream: app, rate_limit: [per_token] }
  - { name: t1, match: { path: /t1 }, upstream: app, rate_limit: [per_tenant_route] }
  - { name: t2, match: { path: /t2 }, upstream: app, rate_limit: [per_tenant_route] }
  - { name: both, match: { path: /both }, upstream: app, rate_limit: [per_ip, per_user] }
  - { name: apikey, match: { path: /apikey }, upstream: app, rate_limit: [per_key_or_skip] }
  - { name: shadow, match: { path: /shadow }, upstream: app, rate_limit: [shadow] }
  - { name: free, match: { path: /free }, upstream: app }
`;

describe('rate_limit filter (in process)', () => {
  it('answers 429 rate_limited with Retry-After, and RateLimit fields on every response', async () => {
    const p = compile(LIMITS);
    const first = await run(p, 'a');
    expect(first.deny).toBeUndefined();
    expect(first.headers).toMatchObject({ 'ratelimit-policy': '"per_ip";q=3;w=60', ratelimit: '"per_ip";r=2;t=20' });
    await run(p, 'a');
    await run(p, 'a');
    const denied = await run(p, 'a');
    expect(denied.deny).toMatchObject({ status: 429, reason: 'rate_limited' });
    expect(denied.headers).toMatchObject({ 'retry-after': '20', 'ratelimit-policy': '"per_ip";q=3;w=60', ratelimit: '"per_ip";r=0;t=60' });
    // The same limit on another route counts in the same bucket (no `route` in its key).
    expect((await run(p, 'b')).deny?.reason).toBe('rate_limited');
    // Another client has its own bucket; an unlimited route has no fields.
    expect((await run(p, 'a', { ip: '192.0.2.2' })).deny).toBeUndefined();
    expect(p.routes.find((r) => r.name === 'free')!.request).toBeNull();
    await p.close();
  });

  it('groups IPv6 clients by /64, IPv4 by address', async () => {
    const p = compile(LIMITS);
    const same64 = ['2001:db8:1:2::1', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002:0:0:0:9', '2001:db8:1:2::abcd'];
    let allowed = 0;
    for (const ip of same64) if ((await run(p, 'a', { ip })).deny === undefined) allowed++;
    expect(allowed).toBe(3);
    expect((await run(p, 'a', { ip: '2001:db8:1:3::1' })).deny).toBeUndefined();
    expect(await count(p, 'a', 4, { ip: '198.51.100.7' })).toBe(3);
    await p.close();
  });

  it('keys on a verified claim; without it, on the client IP', async () => {
    const p = compile(LIMITS);
    expect(await count(p, 'user', 3, { claims: { sub: 'alice' }, ip: '192.0.2.10' })).toBe(2);
    expect(await count(p, 'user', 3, { claims: { sub: 'alice' }, ip: '192.0.2.11' })).toBe(0);
    expect(await count(p, 'user', 1, { claims: { sub: 'bob' }, ip: '192.0.2.10' })).toBe(1);
    expect(await count(p, 'user', 3, { ip: '192.0.2.12' })).toBe(2); // anonymous: by IP, never one shared bucket
    expect(await count(p, 'user', 1, { ip: '192.0.2.13' })).toBe(1);
    // `subject`: whatever authenticated the request (JWT subject_claim, forward-auth subject header).
    expect(await count(p, 'subject', 3, { subject: 'svc-7', ip: '192.0.2.14' })).toBe(2);
    expect(await count(p, 'subject', 1, { subject: 'svc-7', ip: '192.0.2.15' })).toBe(0);
    await p.close();
  });

  it('counts the same token once whether sent in the header or the cookie', async () => {
    const p = compile(LIMITS);
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
    expect((await run(p, 'token', { headers: { authorization: `Bearer ${token}` }, ip: '192.0.2.20' })).deny).toBeUndefined();
    expect((await run(p, 'token', { headers: { cookie: `theme=dark; access_token=${token}` }, ip: '192.0.2.21' })).deny).toBeUndefined();
    expect((await run(p, 'token', { headers: { authorization: `bearer ${token}` }, ip: '192.0.2.22' })).deny?.reason).toBe('rate_limited');
    expect((await run(p, 'token', { headers: { cookie: `access_token=${token}` }, ip: '192.0.2.23' })).deny?.reason).toBe('rate_limited');
    await p.close();
  });

  it('combines key parts; `route` separates routes', async () => {
    const p = compile(LIMITS);
    expect(await count(p, 't1', 3, { headers: { 'x-tenant': 'acme' } })).toBe(2);
    expect(await count(p, 't2', 3, { headers: { 'x-tenant': 'acme' } })).toBe(2);
    expect(await count(p, 't1', 3, { headers: { 'x-tenant': 'globex' } })).toBe(2);
    // Long or odd values are hashed into the key, never split it.
    expect(await count(p, 't1', 3, { headers: { 'x-tenant': 'a|b}'.repeat(100) } })).toBe(2);
    await p.close();
  });

  it('several limits on one route must all pass, and each is reported', async () => {
    const p = compile(LIMITS);
    const r = await run(p, 'both', { claims: { sub: 'carol' }, ip: '192.0.2.30' });
    expect(r.headers).toMatchObject({ 'ratelimit-policy': '"per_ip";q=3;w=60, "per_user";q=2;w=3600', ratelimit: '"per_ip";r=2;t=20, "per_user";r=1;t=1800' });
    await run(p, 'both', { claims: { sub: 'carol' }, ip: '192.0.2.30' });
    const third = await run(p, 'both', { claims: { sub: 'carol' }, ip: '192.0.2.30' });
    expect(third.deny?.reason).toBe('rate_limited'); // per_user is spent, per_ip is not
    expect(third.headers['retry-after']).toBe('1800');
    await p.close();
  });

  it('skips a limit whose key is absent when told to; report mode never denies', async () => {
    const p = compile(LIMITS);
    expect(await count(p, 'apikey', 3)).toBe(3);
    expect((await run(p, 'apikey')).headers).toEqual({ 'ratelimit-policy': '"per_key_or_skip";q=1;w=3600' });
    expect(await count(p, 'apikey', 2, { headers: { 'x-api-key': 'k1' } })).toBe(1);
    const before = (await metrics.registry.getSingleMetric('portcullis_rate_limit_decisions_total')!.get()).values
      .find((v) => v.labels.route === 'shadow' && v.labels.limit === 'shadow' && v.labels.decision === 'report' && v.labels.source === 'memory')?.value ?? 0;
    expect(await count(p, 'shadow', 3)).toBe(3);
    const after = (await metrics.registry.getSingleMetric('portcullis_rate_limit_decisions_total')!.get()).values
      .find((v) => v.labels.route === 'shadow' && v.labels.limit === 'shadow' && v.labels.decision === 'report' && v.labels.source === 'memory')!.value;
    expect(after - before).toBe(2);
    await p.close();
  });
});

describe('rate_limit filter while Redis does not answer', () => {
  async function withDeadRedis(store: string): Promise<CompiledPolicy> {
    const port = await freePort(); // nothing listens there
    const p = compile(`rate_limits:
  store: { redis: "redis://127.0.0.1:${port}", connect_timeout: 100ms, command_timeout: 50ms, ${store} }
  per_ip: { limit: 3, window: 1m }
routes:
  - { name: a, match: { path: /a }, upstream: app, rate_limit: per_ip }
`);
    await p.ready;
    return p;
  }

  it('deny: 503 ratelimit_unavailable, and /readyz says so when required', async () => {
    const p = await withDeadRedis('on_redis_failure: deny, required: true');
    const r = await run(p, 'a');
    expect(r.deny).toMatchObject({ status: 503, reason: 'ratelimit_unavailable' });
    expect(r.headers['retry-after']).toBe('1');
    expect(p.readiness.get('ratelimit_store')!()).toBe('redis unavailable');
    await p.close();
  });

  it('allow: everything passes, uncounted', async () => {
    const p = await withDeadRedis('on_redis_failure: allow');
    expect(await count(p, 'a', 10)).toBe(10);
    expect((await run(p, 'a')).headers.ratelimit).toBeUndefined();
    await p.close();
  });

  it('local: counts in process with its own limit', async () => {
    const p = await withDeadRedis('on_redis_failure: local, local_limit: { limit: 5, window: 1m }');
    expect(await count(p, 'a', 8)).toBe(5);
    await p.close();
  });
});

describe('rate_limit policy errors', () => {
  it('names the place and the nearest limit', () => {
    expect(problems(`rate_limits:
  per_ip: { limit: 3, window: 1m }
routes:
  - { match: { path: /a }, upstream: app, rate_limit: [per_iq] }
`)).toEqual(['policy.yaml:7:56: unknown rate limit "per_iq" (did you mean "per_ip"?)']);
    expect(problems(`routes:
  - { match: { path: /a }, upstream: app, rate_limit: per_ip }
`)[0]).toMatch(/^policy.yaml:5:.*no rate_limits are defined/);
  });

  it('refuses malformed limits and store settings', () => {
    const out = problems(`rate_limits:
  store: { redis: "redis://a:1,b:2", on_redis_failure: alow }
  per_ip: { key: [client_ip, cookie:x], limit: 0, window: 1 }
routes: []
`);
    expect(out.join('\n')).toMatch(/policy.yaml:5:56: expected one of local, deny, allow.*did you mean "allow"/);
    expect(out.join('\n')).toMatch(/not a valid key/);
    expect(out.join('\n')).toMatch(/must be at least 1/);
    expect(out.join('\n')).toMatch(/invalid duration/);
    expect(problems(`rate_limits:
  store: { redis: "redis://a:1,b:2" }
routes: []
`).join('\n')).toMatch(/invalid Redis URL: several hosts/);
    expect(problems(`rate_limits:
  store: { redis: "rediss://h:6380?ca=/nonexistent/ca.pem" }
routes: []
`)).toEqual(['policy.yaml:5:19: cannot read the CA file of the Redis URL (?ca=/nonexistent/ca.pem): ENOENT']);
  });

  it('production refuses on_redis_failure: allow unless acknowledged', () => {
    const policy = (ack: string) => `mode: production
trusted_proxies: [10.0.0.0/8]
rate_limits:
  store: { on_redis_failure: allow${ack} }
routes: []
`;
    expect(problems(policy(''))).toEqual([expect.stringMatching(/^policy.yaml:7:.*production: on_redis_failure: allow/)]);
    expect(problems(policy(', allow_acknowledged: true'))).toEqual([]);
  });

  it('never shows the Redis password', async () => {
    const p = compile(`rate_limits:
  store: { redis: "\${env:REDIS_URL}", connect_timeout: 50ms }
  per_ip: { limit: 3, window: 1m }
routes:
  - { name: a, match: { path: /a }, upstream: app, rate_limit: per_ip }
`, { REDIS_URL: `redis://:pa55word-xyz@127.0.0.1:${await freePort()}` });
    const described = JSON.stringify(p.routes[0]!.filters.map((f) => f.describe()));
    expect(described).toContain('redis://:********@127.0.0.1');
    expect(described).not.toContain('pa55word-xyz');
    expect(p.source.secrets.has('pa55word-xyz')).toBe(true);
    await p.close();
  });
});
