// Metrics: names and conventions checked by Prometheus' own `promtool check metrics` on real scrapes of a
// real gateway, one process and `workers: 2` (aggregated by the primary), and the helper filters use.
import { execFileSync, spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics, METRIC_NAMES, checkMetricName, methodLabel, statusClass } from '../../src/observability/metrics.ts';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

function promtoolCheck(text: string): { code: number | null; out: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function send(url: string, method = 'GET', headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function scrape(admin: string): Promise<string> {
  const r = await fetch(`${admin}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return r.text();
}

/** The value of one series, e.g. sample(text, 'portcullis_requests_total', { route: 'api' }). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
    found = true;
  }
  return found ? total : NaN;
}

const POLICY = (upstream: string, extra = '') => `
version: 1
${extra}
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
log: { access: off, audit: off }
upstreams:
  app: { url: "${upstream}" }
  gone: { url: "http://127.0.0.1:1", connect_timeout: 500ms }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
  - name: gone
    match: { path: /gone }
    upstream: gone
`;

describe('metric helpers', () => {
  it('refuses names that break the Prometheus conventions', () => {
    expect(() => checkMetricName('counter', 'portcullis_x_hits', [])).toThrow(/_total/);
    expect(() => checkMetricName('gauge', 'portcullis_x_total', [])).toThrow(/counters only/);
    expect(() => checkMetricName('counter', 'jwt_hits_total', [])).toThrow(/portcullis_/);
    expect(() => checkMetricName('histogram', 'portcullis_x_duration_ms', [])).toThrow(/base units/);
    expect(() => checkMetricName('counter', 'portcullis_x_total', ['le'])).toThrow(/label/);
    for (const name of Object.values(METRIC_NAMES)) {
      expect(() => checkMetricName(name.endsWith('_total') ? 'counter' : 'histogram', name, ['provider'])).not.toThrow();
    }
  });

  it('get-or-create returns the same metric across reloads and refuses a different shape', () => {
    const m = new Metrics({ defaultMetrics: false });
    const a = m.counter(METRIC_NAMES.tokenCache, 'Token cache lookups.', ['provider', 'result']);
    const b = m.counter(METRIC_NAMES.tokenCache, 'Token cache lookups.', ['provider', 'result']);
    expect(a).toBe(b);
    expect(() => m.counter(METRIC_NAMES.tokenCache, 'x', ['provider'])).toThrow(/labels/);
    expect(() => m.gauge(METRIC_NAMES.jwksRefreshes.replace('_total', ''), 'x', []).set(1)).not.toThrow();
    expect(m.histogram(METRIC_NAMES.forwardAuthDuration, 'x', ['provider'])).toBe(m.histogram(METRIC_NAMES.forwardAuthDuration, 'x', ['provider']));
  });

  it('bounds method and status labels', async () => {
    expect(methodLabel('GET')).toBe('GET');
    expect(methodLabel('PROPFIND')).toBe('_OTHER');
    expect(statusClass(204)).toBe('2xx');
    expect(statusClass(499)).toBe('4xx');
    const m = new Metrics({ defaultMetrics: false });
    const r = m.route('api');
    r.observe('GET', 200, 0.01);
    r.observe('GET', 201, 0.02);
    r.observe('BREW', 418, 0.01);
    const text = await m.registry.metrics();
    expect(sample(text, 'portcullis_requests_total', { route: 'api', method: 'GET', status_class: '2xx' })).toBe(2);
    expect(sample(text, 'portcullis_requests_total', { method: '_OTHER', status_class: '4xx' })).toBe(1);
    expect(promtoolCheck(text).code).toBe(0);
  });
});

describe('a real gateway scrape', () => {
  let upstream: RecordingUpstream;
  let gw: RunningGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startGateway(POLICY(upstream.url));
  });
  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
  });

  it('passes promtool check metrics and counts by route name, never by raw path', async () => {
    for (let i = 0; i < 3; i++) expect(await send(`${gw.url}/api/users/${i}?token=abc${i}`)).toBe(200);
    expect(await send(`${gw.url}/api/x`, 'POST')).toBe(200);
    expect(await send(`${gw.url}/nowhere/${Math.random()}`)).toBe(404);
    expect(await send(`${gw.url}/gone`)).toBe(502);
    const text = await scrape(gw.admin);
    const check = promtoolCheck(text);
    expect(check.out).toBe('');
    expect(check.code).toBe(0);
    expect(sample(text, 'portcullis_requests_total', { route: 'api', method: 'GET', status_class: '2xx' })).toBe(3);
    expect(sample(text, 'portcullis_requests_total', { route: 'api', method: 'POST', status_class: '2xx' })).toBe(1);
    expect(sample(text, 'portcullis_request_duration_seconds_count', { route: 'api', method: 'GET' })).toBe(3);
    expect(sample(text, 'portcullis_denies_total', { route: 'none', filter: 'gateway', reason: 'route_not_found' })).toBe(1);
    expect(sample(text, 'portcullis_upstream_errors_total', { upstream: 'gone', reason: 'upstream_unreachable' })).toBe(1);
    expect(sample(text, 'portcullis_upstream_duration_seconds_count', { upstream: 'app' })).toBe(4);
    expect(sample(text, 'portcullis_requests_in_flight')).toBe(0);
    expect(sample(text, 'portcullis_policy_info')).toBe(1);
    expect(text).toMatch(/portcullis_policy_info\{hash="[0-9a-f]{16}"\} 1/);
    // process and Node runtime metrics
    expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
    // raw paths and query values never become labels
    expect(text).not.toContain('/api/users');
    expect(text).not.toContain('abc0');
    expect(text).not.toContain('/nowhere');
  });

  it('counts a WebSocket upgrade in flight while it is open, and back to 0 after (regression: went to -1)', async () => {
    upstream.server.once('upgrade', (_req, socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
    });
    const { port } = new URL(gw.url);
    const s = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('data', () => resolve());
      s.on('error', reject);
      s.write('GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    expect(sample(await scrape(gw.admin), 'portcullis_requests_in_flight')).toBe(1);
    s.destroy();
    let inflight = NaN;
    for (let i = 0; i < 50 && inflight !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      inflight = sample(await scrape(gw.admin), 'portcullis_requests_in_flight');
    }
    expect(inflight).toBe(0);
  });

  it('counts reloads by result', async () => {
    const ok = await fetch(`${gw.admin}/reload`, { method: 'POST' });
    expect(ok.status).toBe(200);
    const text = await scrape(gw.admin);
    expect(sample(text, 'portcullis_policy_reloads_total', { result: 'success' })).toBe(1);
  });
});

describe('workers: 2', () => {
  let upstream: RecordingUpstream;
  let gw: RunningGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startGateway(POLICY(upstream.url, 'workers: 2'));
  });
  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
  });

  it('aggregates all workers into one scrape that promtool accepts', async () => {
    const n = 40;
    // New connections each time so the kernel spreads them over both workers.
    await Promise.all(Array.from({ length: n }, () => send(`${gw.url}/api/a`, 'GET', { connection: 'close' })));
    const text = await scrape(gw.admin);
    expect(promtoolCheck(text)).toEqual({ code: 0, out: '' });
    expect(sample(text, 'portcullis_requests_total', { route: 'api', method: 'GET', status_class: '2xx' })).toBe(n);
    expect(sample(text, 'portcullis_request_duration_seconds_count', { route: 'api' })).toBe(n);
    // per-process facts are not multiplied by the number of workers
    expect(sample(text, 'portcullis_policy_info')).toBe(1);
    expect(sample(text, 'portcullis_requests_in_flight')).toBe(0);
    const reload = await fetch(`${gw.admin}/reload`, { method: 'POST' });
    expect(reload.status).toBe(200);
    expect(sample(await scrape(gw.admin), 'portcullis_policy_reloads_total', { result: 'success' })).toBe(1);
  });
});

describe('promtool', () => {
  it('is installed', () => {
    expect(execFileSync('promtool', ['--version'], { encoding: 'utf8' })).toMatch(/promtool/);
  });
});
