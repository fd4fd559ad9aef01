// The dashboard's live window: rates, error share, quantiles and deny reasons are differences between two
// readings of the registry the request path already writes (nothing is added to the request path).
import { describe, expect, it } from 'vitest';
import { Metrics, METRIC_NAMES } from '../../src/observability/metrics.ts';
import { quantile, read, StatsSampler } from '../../src/server/dashboard/sampler.ts';
import { hostAllowed } from '../../src/server/dashboard/index.ts';

describe('quantile over histogram increments', () => {
  // DURATION_BUCKETS: 0.0005, 0.001, 0.0025, 0.005, 0.01, ...; 15 bounds, +Inf last.
  const buckets = (counts: Record<number, number>) => {
    const out = new Array<number>(16).fill(0);
    let sum = 0;
    for (let i = 0; i < 16; i++) {
      sum += counts[i] ?? 0;
      out[i] = sum;
    }
    return out;
  };

  it('interpolates inside the bucket that holds the rank, as histogram_quantile does', () => {
    const b = buckets({ 2: 100 }); // all 100 between 1 ms and 2.5 ms
    expect(quantile(0.5, b)).toBeCloseTo(0.00175, 6);
    expect(quantile(0.99, b)).toBeCloseTo(0.001 + 0.0015 * 0.99, 6);
  });

  it('gives null without observations and the top bound for the +Inf bucket', () => {
    expect(quantile(0.5, buckets({}))).toBeNull();
    expect(quantile(0.99, buckets({ 15: 10 }))).toBe(30);
  });
});

describe('StatsSampler', () => {
  it('reads per-route counts, 5xx, latency, top denies and limits hit from the registry', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const sampler = new StatsSampler(metrics.registry, { intervalMs: 60_000 });
    const beforeBaseline = Date.now();
    await sampler.sample(); // the baseline: nothing yet
    const start = Date.now();
    await new Promise((r) => setTimeout(r, 20)); // a window of measurable length
    const route = metrics.route('api');
    for (let i = 0; i < 90; i++) route.observe('GET', 200, 0.002);
    for (let i = 0; i < 10; i++) route.observe('POST', 503, 0.02);
    metrics.denies.inc({ route: 'api', filter: 'jwt', reason: 'token_missing' }, 7);
    metrics.denies.inc({ route: 'api', filter: 'csrf', reason: 'cross_site_request' }, 3);
    metrics.counter(METRIC_NAMES.rateLimitDecisions, 'x', ['route', 'limit', 'decision', 'source']).inc({ route: 'api', limit: 'per_ip', decision: 'limited', source: 'redis' }, 4);
    const beforeStats = Date.now();
    const stats = await sampler.stats();
    const afterStats = Date.now();
    const api = stats.routes.api!;
    expect(api.error_ratio).toBeCloseTo(0.1, 6);
    // 100 requests over the window. The window runs from the baseline's reading to the stats' reading:
    // at least from the baseline's return to the stats call, at most from the baseline call to the stats'
    // return, however slow the machine (each reading takes its time as it starts).
    expect(api.rps * (stats.window_ms / 1000)).toBeCloseTo(100, 3);
    expect(stats.window_ms).toBeGreaterThanOrEqual(beforeStats - start);
    expect(stats.window_ms).toBeLessThanOrEqual(afterStats - beforeBaseline);
    expect(api.p50_ms!).toBeGreaterThan(1);
    expect(api.p50_ms!).toBeLessThanOrEqual(2.5);
    expect(api.p99_ms!).toBeGreaterThan(10);
    expect(api.p99_ms!).toBeLessThanOrEqual(25);
    expect(api.top_denies).toEqual([{ filter: 'jwt', reason: 'token_missing', count: 7 }, { filter: 'csrf', reason: 'cross_site_request', count: 3 }]);
    expect(stats.limits_hit).toEqual([{ route: 'api', limit: 'per_ip', count: 4 }]);
    expect(api.series).toHaveLength(1);
    sampler.close();
  });

  it('counts only what happened after the baseline', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.route('old').observe('GET', 200, 0.001);
    metrics.denies.inc({ route: 'old', filter: 'jwt', reason: 'token_missing' });
    const sampler = new StatsSampler(metrics.registry);
    await sampler.sample();
    const stats = await sampler.stats();
    expect(stats.routes.old!.top_denies).toEqual([]);
    expect(stats.routes.old!.p50_ms).toBeNull();
    const r = await read(metrics.registry);
    expect(r.routes.get('old')!.count).toBe(1);
    sampler.close();
  });
});

describe('hostAllowed (DNS rebinding)', () => {
  it.each([
    ['127.0.0.1:9901', true], ['[::1]:9901', true], ['localhost:9901', true], ['10.1.2.3', true],
    ['admin.internal:9901', true], ['attacker.example:9901', false], [undefined, false],
  ])('%s → %s', (host, ok) => {
    expect(hostAllowed(host, 'admin.internal')).toBe(ok);
  });
});
