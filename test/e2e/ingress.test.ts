// Standalone ingress with real processes: three upstream instances (one killed mid-load, one slow), prefix
// strip and Host rewrite as the upstream sees them, redirects, IP rules against spoofing, active health.
import { request as httpRequest } from 'node:http';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstreamProcess, type UpstreamProcess } from '../helpers/upstream-process.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(base: string, path: string, options: { headers?: Record<string, string>; method?: string; localAddress?: string; host?: string } = {}): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: options.host ?? url.hostname.replace(/^\[|\]$/g, ''), port: url.port, path, method: options.method ?? 'GET', headers: options.headers, localAddress: options.localAddress },
      (res) => {
        let data = '';
        res.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function metricValue(gw: RunningGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(gw.admin + '/metrics')).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.slice(m.lastIndexOf(' ') + 1)) : NaN;
}

describe('three targets, one killed mid-load, one slow', () => {
  let a: UpstreamProcess;
  let b: UpstreamProcess;
  let c: UpstreamProcess;
  let gw: RunningGateway;

  beforeAll(async () => {
    [a, b, c] = await Promise.all([startUpstreamProcess('a'), startUpstreamProcess('b', { delayMs: 120 }), startUpstreamProcess('c')]);
    gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  app:
    targets: ["${a.url}", "${b.url}", { url: "${c.url}", weight: 1, max_connections: 16 }]
    balance: least_request
    health: { failures: 2, ejection: 30s }
    retries: { attempts: 2, min_concurrent: 16 }
routes:
  - match: { path_prefix: / }
    upstream: app
`);
  });

  afterAll(async () => {
    await gw?.stop();
    await Promise.all([a?.kill(), b?.kill(), c?.kill()]);
  });

  it('loses no idempotent request when a target dies, ejects it (metrics, log), and sends less to the slow one', async () => {
    const client = new Pool(gw.url, { connections: 8 });
    const counts: Record<string, number> = {};
    const failures: string[] = [];
    let done = 0;
    let killed: Promise<void> | null = null;
    const worker = async () => {
      while (done < 400) {
        const n = done++;
        if (n === 120) killed = a.kill();
        try {
          const r = await client.request({ path: `/item/${n}`, method: n % 5 === 0 ? 'HEAD' : 'GET' });
          const text = await r.body.text();
          if (r.statusCode !== 200) failures.push(`${n}: ${r.statusCode} ${text}`);
          const name = String(r.headers['x-upstream']);
          counts[name] = (counts[name] ?? 0) + 1;
        } catch (err) {
          failures.push(`${n}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await killed;
    await client.close();
    expect(failures).toEqual([]);
    expect(counts.a).toBeGreaterThan(0);
    // least_request: the slow instance holds its requests longer, so it is given fewer.
    expect(counts.b!).toBeLessThan(counts.c!);
    const ejections = await metricValue(gw, new RegExp(`^portcullis_upstream_ejections_total\\{upstream="app",target="http://127\\.0\\.0\\.1:${a.port}"\\}`));
    expect(ejections).toBeGreaterThanOrEqual(1);
    expect(await metricValue(gw, new RegExp(`^portcullis_upstream_target_healthy\\{upstream="app",target="http://127\\.0\\.0\\.1:${a.port}"\\}`))).toBe(0);
    expect(await metricValue(gw, /^portcullis_upstream_retries_total\{upstream="app",result="retried"\}/)).toBeGreaterThanOrEqual(1);
    expect(gw.stderr()).toContain('upstream target ejected');
    // After the ejection nothing more is sent to the dead target: a burst is answered by the others.
    const after = await Promise.all(Array.from({ length: 20 }, (_, i) => get(gw.url, `/after/${i}`)));
    expect(after.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(after.every((r) => r.headers['x-upstream'] !== 'a')).toBe(true);
  });

  it('answers 503 no_healthy_upstream when every target is gone', async () => {
    await Promise.all([b.kill(), c.kill()]);
    let last: Answer | null = null;
    for (let i = 0; i < 8; i++) last = await get(gw.url, `/x/${i}`);
    expect(last!.status).toBe(503);
    expect(JSON.parse(last!.body)).toMatchObject({ reason: 'no_healthy_upstream' });
  });
});

describe('rewrites, redirects, request headers', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  app: { url: "${up.url}" }
routes:
  - match: { path_prefix: /app }
    upstream: app
    rewrite: { strip_prefix: /app }
  - match: { path_prefix: /legacy }
    upstream: app
    rewrite: { strip_prefix: /legacy, add_prefix: /cgi/legacy-app, host: legacy.internal:8080 }
    request_headers: { add: { X-Mounted-At: /legacy }, remove: [Cookie] }
  - match: { path_prefix: /old }
    redirect: { to: /new, status: 301, keep_path: true, strip_prefix: /old }
`);
  });

  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  it('strips the prefix exactly as the upstream sees it, query kept, client Host kept by default', async () => {
    up.received.length = 0;
    for (const p of ['/app', '/app/', '/app/a/b?x=1&y=%20', '/app//a/./b/../c']) expect((await get(gw.url, p)).status).toBe(200);
    expect(up.received.map((r) => r.url)).toEqual(['/', '/', '/a/b?x=1&y=%20', '/a/c']);
    expect(up.received[0]!.headers.host).toBe(new URL(gw.url).host);
  });

  it('never lets a rewritten path escape (encoded and doubled dot segments)', async () => {
    up.received.length = 0;
    const attacks = ['/app/..%2f..%2fetc/passwd', '/app//..', '/app/%2e%2e/%2e%2e/etc/passwd', '/app/..', '/legacy/../../etc', '/legacy/%2e%2e%2f', '/app/.%2e/x'];
    for (const p of attacks) {
      const r = await get(gw.url, p);
      expect([200, 400, 404]).toContain(r.status);
    }
    for (const r of up.received) {
      expect(r.url).not.toMatch(/\.\.|%2e|%2f|\/\//i);
      expect(r.url.startsWith('/')).toBe(true);
    }
    const legacy = up.received.filter((r) => r.headers['x-mounted-at']);
    for (const r of legacy) expect(r.url.startsWith('/cgi/legacy-app')).toBe(true);
  });

  it('replaces a prefix, sets Host and edits headers', async () => {
    up.received.length = 0;
    const r = await get(gw.url, '/legacy/report.cgi?id=3', { headers: { cookie: 'sid=1', 'x-mounted-at': 'spoofed' } });
    expect(r.status).toBe(200);
    const seen = up.received[0]!;
    expect(seen.url).toBe('/cgi/legacy-app/report.cgi?id=3');
    expect(seen.headers.host).toBe('legacy.internal:8080');
    expect(seen.headers['x-mounted-at']).toBe('/legacy');
    expect(seen.headers.cookie).toBeUndefined();
    // The gateway still tells the app what the client addressed.
    expect(seen.headers['x-forwarded-host']).toBe(new URL(gw.url).host);
  });

  it('redirects per route without forwarding', async () => {
    up.received.length = 0;
    const r = await get(gw.url, '/old/page?x=1');
    expect(r.status).toBe(301);
    expect(r.headers.location).toBe('/new/page?x=1');
    expect(up.received).toHaveLength(0);
    expect(await metricValue(gw, /^portcullis_denies_total\{.*filter="redirect",reason="redirect"\}/)).toBe(1);
  });
});

describe('IP rules against spoofing', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    up = await startUpstream();
    // Dual-stack listener: IPv4 clients arrive as ::ffff:127.0.0.1. Only ::1 is a trusted proxy.
    gw = await startGateway(`
version: 1
listeners: [{ address: "[::]:0" }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
trusted_proxies: ["::1"]
upstreams:
  app: { url: "${up.url}" }
routes:
  - match: { path_prefix: /internal }
    upstream: app
    ip_rules: { allow: [10.0.0.0/8] }
  - match: { path_prefix: /no-loopback-v4 }
    upstream: app
    ip_rules: { deny: [127.0.0.0/8] }
`);
  });

  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  const port = () => new URL(gw.url.replace('[::]', '[::1]')).port;

  it('ignores X-Forwarded-For from an untrusted peer', async () => {
    up.received.length = 0;
    const r = await get(`http://127.0.0.1:${port()}`, '/internal/x', { headers: { 'x-forwarded-for': '10.1.2.3', forwarded: 'for=10.1.2.3' } });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'ip_not_allowed' });
    expect(up.received).toHaveLength(0);
  });

  it('believes X-Forwarded-For from a trusted proxy, in either spelling of IPv4', async () => {
    expect((await get(`http://[::1]:${port()}`, '/internal/x', { headers: { 'x-forwarded-for': '10.1.2.3' } })).status).toBe(200);
    expect((await get(`http://[::1]:${port()}`, '/internal/x', { headers: { 'x-forwarded-for': '::ffff:10.1.2.3' } })).status).toBe(200);
    expect((await get(`http://[::1]:${port()}`, '/internal/x', { headers: { 'x-forwarded-for': '10.1.2.3, 192.0.2.1' } })).status).toBe(403);
  });

  it('judges an IPv4 client arriving as IPv4-mapped IPv6 by its IPv4 address', async () => {
    const r = await get(`http://127.0.0.1:${port()}`, '/no-loopback-v4/x');
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'ip_not_allowed' });
    expect((await get(`http://[::1]:${port()}`, '/no-loopback-v4/x')).status).toBe(200);
  });
});

describe('active health checks', () => {
  let good: UpstreamProcess;
  let sick: UpstreamProcess;
  let gw: RunningGateway;

  beforeAll(async () => {
    [good, sick] = await Promise.all([startUpstreamProcess('good'), startUpstreamProcess('sick', { healthStatus: 503 })]);
    gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  app:
    targets: ["${good.url}", "${sick.url}"]
    health: { check: { path: /healthz, interval: 200ms, timeout: 1s, expected_status: [200, 204], unhealthy_after: 1 } }
routes:
  - match: { path_prefix: / }
    upstream: app
`);
  });

  afterAll(async () => {
    await gw?.stop();
    await Promise.all([good?.kill(), sick?.kill()]);
  });

  it('takes a target failing its check out of rotation', async () => {
    const sickGauge = new RegExp(`^portcullis_upstream_target_healthy\\{upstream="app",target="http://127\\.0\\.0\\.1:${sick.port}"\\}`);
    for (let i = 0; i < 100 && (await metricValue(gw, sickGauge)) !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => get(gw.url, `/r/${i}`)));
    expect(answers.map((r) => r.headers['x-upstream'])).toEqual(Array(10).fill('good'));
    expect(await metricValue(gw, sickGauge)).toBe(0);
    expect(gw.stderr()).toContain('fails its health check');
  });
});

describe('reload', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;
  const policy = (check: boolean) => `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  app:
    targets: ["${up.url}", "${up.url}"]
    ${check ? 'health: { check: { path: /healthz, interval: 100ms } }' : ''}
routes:
  - match: { path_prefix: / }
    upstream: app
`;

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startGateway(policy(true));
  });

  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  it('stops the retired policy\'s health checks', async () => {
    const checks = () => up.received.filter((r) => r.url === '/healthz').length;
    for (let i = 0; i < 50 && checks() < 4; i++) await new Promise((r) => setTimeout(r, 100));
    expect(checks()).toBeGreaterThanOrEqual(4);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(gw.policyFile, policy(false));
    const r = await fetch(gw.admin + '/reload', { method: 'POST' });
    expect(r.status).toBe(200);
    await new Promise((res) => setTimeout(res, 300)); // a round already in flight may still land
    const settled = checks();
    await new Promise((res) => setTimeout(res, 600));
    expect(checks()).toBe(settled);
    expect((await get(gw.url, '/still-served')).status).toBe(200);
  });
});
