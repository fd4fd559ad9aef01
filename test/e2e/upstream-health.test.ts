// Upstream health with `workers: N`: a target ejected for its 5xx answers stays ejected across a reload,
// active checks run once for the gateway (the primary) however many workers serve, and their verdict
// reaches every worker.
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

/** One GET on a fresh connection, so the cluster hands each request to the next worker. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function metric(gw: RunningGateway, name: string, labels: string): Promise<number> {
  const text = await (await fetch(gw.admin + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + '{') && l.includes(labels));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

describe('5xx ejection survives a reload (workers: 2)', () => {
  let good: RecordingUpstream;
  let bad: RecordingUpstream;
  let gw: RunningGateway;
  const policy = (extra: string) => `
version: 1
workers: 2
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: "off" }
upstreams:
  app:
    targets: ["${good.url}", "${bad.url}"]
    retries: { attempts: 0 }
    health: { failures: 2, ejection: 5m, max_ejection: 10m, passive: { status_5xx: true } }
routes:
  - match: { path_prefix: / }
    upstream: app
${extra}`;

  beforeAll(async () => {
    good = await startUpstream();
    bad = await startUpstream();
    bad.handler = (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('starting');
    };
    gw = await startGateway(policy(''));
  });
  afterAll(async () => {
    await gw?.stop();
    await good?.close();
    await bad?.close();
  });

  it('ejects the target that answers 503 in every worker, and keeps it out after a reload', async () => {
    const ejections = () => metric(gw, 'portcullis_upstream_ejections_total', `target="${bad.url}"`);
    // Each worker judges passive health itself: go on until both have ejected the bad target.
    for (let i = 0; i < 200 && !((await ejections()) >= 2); i++) await get(gw.url + '/x');
    expect(await ejections()).toBe(2);
    const badBefore = bad.received.length;
    for (let i = 0; i < 10; i++) expect((await get(gw.url + '/y')).status).toBe(200);
    expect(bad.received.length).toBe(badBefore);

    // A reload with a changed policy (one more route): the unchanged target keeps its ejection.
    writeFileSync(gw.policyFile, policy('  - match: { path: /new }\n    upstream: app\n'));
    const reloaded = await (await fetch(gw.admin + '/reload', { method: 'POST' })).json() as { status: string };
    expect(reloaded.status).toBe('reloaded');
    const goodBefore = good.received.length;
    for (let i = 0; i < 20; i++) expect((await get(gw.url + '/new')).status).toBe(200);
    expect(good.received.length).toBe(goodBefore + 20);
    expect(bad.received.length).toBe(badBefore);
    expect(await metric(gw, 'portcullis_upstream_target_healthy', `target="${bad.url}"`)).toBe(0);
  });
});

describe('active checks run once per gateway (workers: 3)', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let healthy = true;
  const INTERVAL = 200;
  const probes = () => up.received.filter((r) => r.headers['user-agent'] === 'portcullis-health-check').length;

  beforeAll(async () => {
    up = await startUpstream();
    up.handler = (req, res) => {
      const status = req.url === '/health' && !healthy ? 500 : 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(String(status));
    };
    gw = await startGateway(`
version: 1
workers: 3
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: "off" }
upstreams:
  app:
    url: "${up.url}"
    health: { check: { path: /health, interval: ${INTERVAL}ms, unhealthy_after: 1, healthy_after: 1 } }
routes:
  - match: { path_prefix: / }
    upstream: app
`);
  });
  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  it('probes each target once per interval, not once per worker', async () => {
    await waitFor(() => probes() > 0, 10_000);
    const start = performance.now();
    const before = probes();
    await new Promise((r) => setTimeout(r, 2_000));
    const elapsed = performance.now() - start;
    const seen = probes() - before;
    // One checker: at most one round per interval (plus the round in progress at each end). Three
    // checkers (one per worker) would be about three times as many.
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(Math.floor(elapsed / INTERVAL) + 2);
  });

  it('takes the verdict to every worker: a failing check stops traffic everywhere, a passing one brings it back', async () => {
    healthy = false;
    await waitFor(async () => (await get(gw.url + '/a')).status === 503, 10_000);
    // Every request on a fresh connection (so every worker in turn) is refused without reaching the upstream.
    const forwarded = up.received.filter((r) => r.url === '/b').length;
    for (let i = 0; i < 9; i++) {
      const r = await get(gw.url + '/b');
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body).reason).toBe('no_healthy_upstream');
    }
    expect(up.received.filter((r) => r.url === '/b').length).toBe(forwarded);
    healthy = true;
    await waitFor(async () => (await get(gw.url + '/a')).status === 200, 10_000);
    for (let i = 0; i < 9; i++) expect((await get(gw.url + '/c')).status).toBe(200);
  });
});
