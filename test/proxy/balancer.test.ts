// Target selection and upstream health state, without sockets: schedules, least-request, ejection and
// return, the retry rules and budget.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Pool } from 'undici';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';
import type { CompileEnv } from '../../src/contract/filter.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { Balancer, Target, weightedSchedule } from '../../src/proxy/balancer.ts';
import { Upstream, upstreamSchema, type UpstreamOptions } from '../../src/proxy/upstream.ts';

const targets = (...weights: number[]) => weights.map((w, i) => new Target(i, new URL(`http://127.0.0.1:${1000 + i}`), w, null as unknown as Pool, undefined));

function makeEnv(metrics = new Metrics({ defaultMetrics: false })): CompileEnv & { problems: string[] } {
  const problems: string[] = [];
  return {
    mode: 'development',
    secrets: null as never,
    telemetry: quietTelemetry(metrics),
    problem: (path, message) => problems.push(`${path.join('.')}: ${message}`),
    onClose: () => {},
    onReady: () => {},
    readiness: () => {},
    problems,
  };
}

function upstream(config: Record<string, unknown>, env = makeEnv(), options: UpstreamOptions = {}): Upstream {
  const issues: { path: readonly (string | number)[]; message: string }[] = [];
  const parsed = upstreamSchema.parse(config, ['upstreams', 'app'], issues);
  expect(issues).toEqual([]);
  return new Upstream('app', parsed!, env, ['upstreams', 'app'], options);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('balancing', () => {
  it('spreads weights smoothly', () => {
    expect(weightedSchedule([1, 1, 1])).toEqual([0, 1, 2]);
    expect(weightedSchedule([2, 4])).toEqual([1, 0, 1]);
    const s = weightedSchedule([5, 1, 1]);
    expect(s).toHaveLength(7);
    expect(s.filter((i) => i === 0)).toHaveLength(5);
    expect(s).not.toContain(undefined);
    expect(s.join('')).not.toMatch(/000/);
  });

  it('round robin skips unavailable targets and targets already tried', () => {
    const ts = targets(1, 1, 1);
    const b = new Balancer(ts, 'round_robin');
    expect([b.pick(0), b.pick(0), b.pick(0), b.pick(0)].map((t) => t!.index)).toEqual([0, 1, 2, 0]);
    ts[1]!.available = false;
    expect([b.pick(0), b.pick(0), b.pick(0)].map((t) => t!.index)).toEqual([2, 0, 2]);
    expect(b.pick(0b101)).toBeNull();
    ts[0]!.available = false;
    ts[2]!.available = false;
    expect(b.pick(0)).toBeNull();
  });

  it('least request picks the fewest outstanding per weight', () => {
    const ts = targets(1, 1, 2);
    const b = new Balancer(ts, 'least_request');
    ts[0]!.inflight = 3;
    ts[1]!.inflight = 1;
    ts[2]!.inflight = 3; // 1.5 per weight
    expect(b.pick(0)!.index).toBe(1);
    expect(b.pick(0b10)!.index).toBe(2);
    ts[1]!.available = false;
    expect(b.pick(0)!.index).toBe(2);
  });

  it('a single target is returned as is, and never for a retry', () => {
    const [t] = targets(1);
    const b = new Balancer([t!], 'least_request');
    expect(b.pick(0)).toBe(t);
    expect(b.pick(1)).toBeNull();
  });
});

describe('upstream health', () => {
  it('ejects a target after consecutive failures, logs and counts it, and returns it after the back-off', async () => {
    vi.useFakeTimers();
    const metrics = new Metrics({ defaultMetrics: false });
    const u = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], health: { failures: 3, ejection: '1s' } }, makeEnv(metrics));
    const [a, b] = u.targets;
    u.failed(a!, true, 'upstream_unreachable');
    u.failed(a!, true, 'upstream_unreachable');
    u.succeeded(a!); // a success ends the run
    u.failed(a!, true, 'upstream_unreachable');
    u.failed(a!, true, 'upstream_unreachable');
    expect(a!.available).toBe(true);
    u.failed(a!, true, 'upstream_unreachable');
    expect(a!.available).toBe(false);
    expect([u.pick(0), u.pick(0)]).toEqual([b, b]);
    const text = await metrics.registry.metrics();
    expect(text).toContain('portcullis_upstream_ejections_total{upstream="app",target="http://127.0.0.1:1"} 1');
    expect(text).toContain('portcullis_upstream_target_healthy{upstream="app",target="http://127.0.0.1:1"} 0');
    vi.advanceTimersByTime(1_000);
    expect(a!.available).toBe(true);
    expect(await metrics.registry.metrics()).toContain('portcullis_upstream_returns_total{upstream="app",target="http://127.0.0.1:1"} 1');
    // Failing again right away: ejected for twice as long.
    for (let i = 0; i < 3; i++) u.failed(a!, true, 'upstream_unreachable');
    vi.advanceTimersByTime(1_500);
    expect(a!.available).toBe(false);
    vi.advanceTimersByTime(600);
    expect(a!.available).toBe(true);
    await u.close();
  });

  it('answers null when every target is out', async () => {
    const u = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], health: { failures: 1 } });
    for (const t of u.targets) u.failed(t, true, 'upstream_unreachable');
    expect(u.pick(0)).toBeNull();
    await u.close();
  });

  it('counts 5xx answers as failures only with passive.status_5xx', async () => {
    const off = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], health: { failures: 2 } });
    for (let i = 0; i < 5; i++) off.answered(off.targets[0]!, 503);
    expect(off.targets[0]!.available).toBe(true);
    await off.close();
    const on = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], health: { failures: 2, passive: { status_5xx: true } } });
    const a = on.targets[0]!;
    on.answered(a, 500);
    on.answered(a, 404); // a 4xx is an answer: the run of failures ends
    on.answered(a, 502);
    expect(a.available).toBe(true);
    on.answered(a, 503);
    expect(a.available).toBe(false);
    expect(a.lastEjection?.reason).toBe('status_5xx');
    await on.close();
  });

  it('a reload keeps the health of unchanged targets: ejection (for the rest of its back-off), failures, check verdict', async () => {
    vi.useFakeTimers();
    const health = { failures: 2, ejection: '10s', check: { path: '/h' } };
    // Verdicts come from applyCheck (as in a cluster worker): no checker probes ports 1-4 meanwhile.
    const remote = { activeChecks: 'remote' as const };
    const old = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2', 'http://127.0.0.1:3'], health }, makeEnv(), remote);
    const [a, b, c] = old.targets;
    old.failed(a!, true, 'upstream_unreachable');
    old.failed(a!, true, 'upstream_unreachable');
    old.failed(b!, true, 'upstream_unreachable');
    old.applyCheck(c!.origin, false, 'status 500', Date.now());
    expect([a!.available, b!.available, c!.available]).toEqual([false, true, false]);
    vi.advanceTimersByTime(4_000);
    // The new policy drops target 2 and adds target 4.
    const next = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:3', 'http://127.0.0.1:4'], health }, makeEnv(), remote);
    next.adoptHealth(old);
    await old.close();
    const [a2, c2, d2] = next.targets;
    expect([a2!.available, c2!.available, d2!.available]).toEqual([false, false, true]);
    expect(a2!.ejections).toBe(1);
    vi.advanceTimersByTime(5_900);
    expect(a2!.available).toBe(false);
    vi.advanceTimersByTime(200); // 10 s after the ejection, not 10 s after the reload
    expect(a2!.available).toBe(true);
    expect(c2!.available).toBe(false); // until the check says otherwise
    next.applyCheck(c2!.origin, true, 'status 200', Date.now());
    expect(c2!.available).toBe(true);
    await next.close();
  });

  it('never ejects the only target (nowhere else to go)', async () => {
    const u = upstream({ url: 'http://127.0.0.1:1', health: { failures: 1 } });
    for (let i = 0; i < 10; i++) u.failed(u.targets[0]!, true, 'upstream_unreachable');
    expect(u.pick(0)).toBe(u.targets[0]);
    await u.close();
  });
});

describe('retries', () => {
  it('retries only idempotent requests without a body after a connection failure', async () => {
    const u = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2', 'http://127.0.0.1:3'], retries: { attempts: 1 } });
    expect(u.mayRetry(0, 'GET', false, 'ECONNREFUSED')).toBe(true);
    expect(u.mayRetry(0, 'PUT', false, 'UND_ERR_SOCKET')).toBe(true);
    expect(u.mayRetry(0, 'POST', false, 'ECONNREFUSED')).toBe(false);
    expect(u.mayRetry(0, 'GET', true, 'ECONNREFUSED')).toBe(false);
    expect(u.mayRetry(0, 'GET', false, 'UND_ERR_HEADERS_TIMEOUT')).toBe(false);
    expect(u.mayRetry(1, 'GET', false, 'ECONNREFUSED')).toBe(false);
    await u.close();
  });

  it('keeps retries in flight within the budget', async () => {
    const u = upstream({ targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], retries: { attempts: 1, budget_percent: 50, min_concurrent: 2 } });
    u.retryStarted(true);
    u.retryStarted(true);
    expect(u.mayRetry(0, 'GET', false, 'ECONNREFUSED')).toBe(false); // 2 in flight, max(2, 50% of 0)
    u.targets[0]!.inflight = 10;
    expect(u.mayRetry(0, 'GET', false, 'ECONNREFUSED')).toBe(true); // 50% of 10 = 5
    u.targets[0]!.inflight = 0;
    u.retryEnded();
    expect(u.mayRetry(0, 'GET', false, 'ECONNREFUSED')).toBe(true);
    await u.close();
  });
});

describe('upstream schema', () => {
  it('takes url or targets, not both, and checks TLS settings', () => {
    const check = (config: Record<string, unknown>) => {
      const issues: { path: readonly (string | number)[]; message: string }[] = [];
      upstreamSchema.parse(config, ['u'], issues);
      return issues.map((i) => i.message);
    };
    expect(check({ url: 'http://a:1' })).toEqual([]);
    expect(check({ targets: ['http://a:1', { url: 'http://b:1', weight: 3, max_connections: 4 }], balance: 'least_request' })).toEqual([]);
    expect(check({ url: 'http://a:1', targets: ['http://b:1'] })[0]).toMatch(/either "url" or "targets"/);
    expect(check({})[0]).toMatch(/one is required/);
    expect(check({ url: 'https://a:1', tls: { cert: '/x' } })[0]).toMatch(/both "cert" and "key"/);
    expect(check({ url: 'http://a:1', balance: 'random' })[0]).toMatch(/expected one of/);
  });

  it('reports unreadable TLS files and refuses verify: false in production', () => {
    const env = { ...makeEnv(), mode: 'production' as const };
    const u = upstream({ url: 'https://127.0.0.1:1', tls: { ca: '/nonexistent/ca.pem', verify: false } }, env);
    expect(env.problems).toEqual([
      'upstreams.app.tls.ca: cannot read /nonexistent/ca.pem: ENOENT',
      'upstreams.app.tls.verify: production: upstream certificate verification cannot be turned off',
    ]);
    void u.close();
  });
});

describe('active health checks', () => {
  it('marks a target down and up again, and stops checking when the upstream closes (policy retired)', async () => {
    const { createServer } = await import('node:http');
    let status = 200;
    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      res.writeHead(req.url === '/ready' ? status : 404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const metrics = new Metrics({ defaultMetrics: false });
    const u = upstream(
      { targets: [`http://127.0.0.1:${port}`, 'http://127.0.0.1:1'], health: { check: { path: '/ready', interval: '100ms', timeout: '500ms', unhealthy_after: 1, healthy_after: 2 } } },
      makeEnv(metrics),
    );
    const [live, dead] = u.targets;
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 50 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
      return cond();
    };
    expect(await until(() => !dead!.available)).toBe(true);
    expect(live!.available).toBe(true);
    status = 503;
    expect(await until(() => !live!.available)).toBe(true);
    expect(u.pick(0)).toBeNull();
    status = 200;
    expect(await until(() => live!.available)).toBe(true);
    await u.close();
    const after = hits;
    await new Promise((r) => setTimeout(r, 350));
    expect(hits).toBe(after);
    server.close();
  });
});
