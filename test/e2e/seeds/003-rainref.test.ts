// App 003 (RainRef, a support platform with an admin API) behind two replicas of the real gateway running
// the shipped policy config/examples/003-rainref.yaml in production mode behind an "ingress" (the test
// client on 127.0.0.1, the policy's trusted proxy), sharing real Redis (127.0.0.1:6379, a key prefix of
// their own), exporting traces to a real OTLP receiver, and headless Chromium for the browser headers.
// One test per row of the app's table in ../shared/seeds/README.md.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, runCli, startGateway, tempDir, type RunningGateway } from '../../helpers/gateway.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../../helpers/otlp.ts';
import { redisCli } from '../../helpers/redis-server.ts';
import { client, examplePolicy } from '../../helpers/seeds.ts';
import { startUpstream, type RecordingUpstream } from '../../helpers/upstream.ts';

// The few DOM names the page scripts use (the project's tsconfig has no DOM lib).
declare const document: { addEventListener(type: 'securitypolicyviolation', listener: (e: { violatedDirective: string; blockedURI: string }) => void): void };
declare const window: { crossOriginIsolated: boolean };

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const JWT_SECRET = '5a1c9e3f7b2d6a0e4c8f1b5d9a3e7c2f6b0d4a8e1c5f9b3d7a2e6c0f4b8d1a5e';
const JWT_SECRET_PREVIOUS = 'e7d3b9f1a5c2e8d4b0f6a2c8e4d0b6f2a8c4e0d6b2f8a4c0e6d2b8f4a0c6e2d8';
const PUBLIC_API_ORIGIN = 'https://api.rainref.example';
const CDN_ORIGIN = 'https://cdn.rainref.example';

let app: RecordingUpstream;
let otlp: OtlpReceiver;
let gw: RunningGateway;
let replica: RunningGateway;
let http: ReturnType<typeof client>;
const prefix = `rainref:rl:test-${randomUUID()}:`;

function env(): Record<string, string> {
  return {
    JWT_SECRET, JWT_SECRET_PREVIOUS, PUBLIC_API_ORIGIN, CDN_ORIGIN,
    REDIS_URL: 'redis://127.0.0.1:6379',
    RATE_LIMIT_PER_WINDOW: '20',
    RATE_LIMIT_WINDOW_SEC: '60',
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_SERVICE_NAME: 'rainref-gateway-test',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
}

function policy(): string {
  return examplePolicy('003-rainref', {
    '0.0.0.0:8080': '127.0.0.1:0',
    '10.0.0.0/8': '127.0.0.1/32', // the ingress
    '127.0.0.1:9901': '127.0.0.1:0',
    'http://127.0.0.1:8000': app.url,
    'rainref:rl:': prefix,
  });
}

async function token(claims: Record<string, unknown>, options: { kid?: string; secret?: string; ttl?: string; alg?: string } = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'HS256', kid: options.kid ?? 'current' }).setIssuedAt().setExpirationTime(options.ttl ?? '15m')
    .sign(Buffer.from(options.secret ?? JWT_SECRET));
}

const as = (t: string) => ({ authorization: `Bearer ${t}` });

beforeAll(async () => {
  [app, otlp] = await Promise.all([startUpstream(), startOtlpReceiver()]);
  app.handler = (req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>RainRef</title><p>RainRef</p>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, path: req.url, user: req.headers['x-user-id'] ?? null }));
  };
  [gw, replica] = await Promise.all([startGateway(policy(), { env: env() }), startGateway(policy(), { env: env() })]);
  http = client();
}, 60_000);

afterAll(async () => {
  await http?.close();
  await Promise.all([gw?.stop(), replica?.stop()]);
  await Promise.all([app?.close(), otlp?.close()]);
});

beforeEach(() => {
  app.received.length = 0;
});

describe('003: RainRef', () => {
  it('the shipped policy passes validate --production with the production environment', async () => {
    const r = await runCli(['validate', '--production', 'config/examples/003-rainref.yaml'], env());
    expect(r.stdout).toContain('production checklist: nothing missing');
    expect(r.code).toBe(0);
  });

  it('REQUIRE_JWT_FOR_ADMIN', async () => {
    const url = `${gw.url}/api/admin/settings`;
    const expect401 = async (headers: Record<string, string>, reason: string) => {
      const r = await http.send(url, { headers });
      expect([r.status, r.reason]).toEqual([401, reason]);
    };
    await expect401({}, 'token_missing');
    await expect401(as(await token({ sub: 'root', roles: ['admin'] }, { ttl: '-1m' })), 'token_expired');
    await expect401(as(await token({ sub: 'root', roles: ['admin'] }, { secret: 'f'.repeat(64) })), 'token_signature_invalid');
    await expect401(as(await token({ sub: 'root', roles: ['admin'] }, { alg: 'HS512' })), 'token_algorithm_invalid');
    const unsigned = `${Buffer.from('{"alg":"none","kid":"current"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'root', roles: ['admin'], exp: 9999999999 })).toString('base64url')}.`;
    await expect401(as(unsigned), 'token_signature_invalid'); // an alg:none token has no signature
    await expect401(as(unsigned.slice(0, -1) + '.c2ln'), 'token_algorithm_invalid');
    await expect401({ cookie: `access_token=${await token({ sub: 'root', roles: ['admin'] })}` }, 'token_missing'); // header only
    const lead = await http.send(url, { headers: as(await token({ sub: 'lee', roles: ['support_lead'] })) });
    expect([lead.status, lead.reason]).toEqual([403, 'role_missing']);
    expect(app.received).toEqual([]);
    for (const g of [gw, replica]) expect((await http.send(`${g.url}/api/admin/settings`, { method: 'PUT', headers: as(await token({ sub: 'root', roles: ['admin'] })) })).status).toBe(200);
    expect(app.received.map((r) => r.headers['x-user-id'])).toEqual(['root', 'root']);
  });

  it('roles admin, support_lead, support, user; least privilege', async () => {
    const tok = {
      admin: await token({ sub: 'r-admin', roles: ['admin'] }),
      support_lead: await token({ sub: 'r-lead', roles: ['support_lead'] }),
      support: await token({ sub: 'r-support', roles: ['support'] }),
      user: await token({ sub: 'r-user', roles: ['user'] }),
    };
    const matrix: [string, string, Record<keyof typeof tok, number>][] = [
      ['GET', '/api/admin/users', { admin: 200, support_lead: 403, support: 403, user: 403 }],
      ['GET', '/api/reports/weekly', { admin: 200, support_lead: 200, support: 403, user: 403 }],
      ['PATCH', '/api/tickets/3', { admin: 200, support_lead: 200, support: 200, user: 403 }],
      ['DELETE', '/api/tickets/3', { admin: 200, support_lead: 200, support: 403, user: 403 }],
      ['GET', '/api/me', { admin: 200, support_lead: 200, support: 200, user: 200 }],
    ];
    for (const [method, path, want] of matrix) {
      for (const role of Object.keys(want) as (keyof typeof tok)[]) {
        const r = await http.send(`${gw.url}${path}`, { method, headers: as(tok[role]) });
        expect([method, path, role, r.status]).toEqual([method, path, role, want[role]]);
      }
    }
    // The roles reach the app only for requests the gateway let in.
    expect(app.received.filter((r) => r.url === '/api/admin/users').map((r) => r.headers['x-user-roles'])).toEqual(['admin']);
  });

  it('OPA policies with explicit deny reasons, versioned and tested in CI', async () => {
    const r = await http.send(`${gw.url}/api/tickets/3`, { method: 'DELETE', headers: as(await token({ sub: 'd-support', roles: ['support'] })) });
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toBe('application/problem+json');
    expect(r.json).toMatchObject({ type: 'https://portcullis.dev/reasons/method_not_allowed_for_role', status: 403, reason: 'method_not_allowed_for_role' });
    expect(typeof r.json.request_id).toBe('string');
    expect(r.headers['www-authenticate']).toContain('error="insufficient_scope"');
    const missing = await http.send(`${gw.url}/api/me`, { headers: as(await token({ roles: ['user'] })) });
    expect(missing.json).toMatchObject({ status: 401, reason: 'token_claim_missing' });
    expect(missing.headers['www-authenticate']).toContain('error_description="token_claim_missing"');

    // The policy's test cases, versioned beside it, run in CI (npm test runs every shipped cases file).
    const ci = await runCli(['test', 'config/examples/003-rainref.yaml', 'config/examples/003-rainref.cases.yaml']);
    expect(ci.stdout).toMatch(/14 passed, 0 failed/);
    expect(ci.code).toBe(0);
    // A policy change that breaks a promise fails CI, naming the case and its line.
    const dir = tempDir();
    const loose = join(dir, '003-rainref.yaml');
    writeFileSync(loose, readFileSync(join(ROOT, 'config/examples/003-rainref.yaml'), 'utf8').replace('support: [GET, HEAD, POST, PATCH]', 'support: ["*"]'));
    const broken = await runCli(['test', loose, 'config/examples/003-rainref.cases.yaml']);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/003-rainref\.cases\.yaml:\d+: support agents do not delete tickets: expected 403 method_not_allowed_for_role, got allowed/);
  });

  it('ENABLE_HSTS, CSP connect-src, COOP/COEP/CORP on by default', async () => {
    const overTls = await http.send(`${gw.url}/api/me`, { headers: { 'x-forwarded-proto': 'https', ...as(await token({ sub: 'h-user', roles: ['user'] })) } });
    expect(overTls.status).toBe(200);
    expect(overTls.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(overTls.headers['content-security-policy']).toBe(`default-src 'self'; connect-src 'self' ${PUBLIC_API_ORIGIN} ${CDN_ORIGIN}; img-src 'self' ${CDN_ORIGIN}; frame-ancestors 'none'`);
    expect(overTls.headers['cross-origin-opener-policy']).toBe('same-origin');
    expect(overTls.headers['cross-origin-embedder-policy']).toBe('require-corp');
    expect(overTls.headers['cross-origin-resource-policy']).toBe('same-origin');
    // The gateway's own answers (denies) carry them too; HSTS only for what the ingress saw over TLS.
    const denied = await http.send(`${gw.url}/api/admin/x`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(denied.headers['cross-origin-opener-policy']).toBe('same-origin');
    expect(denied.headers['strict-transport-security']).toBeDefined();
    expect((await http.send(`${gw.url}/health`)).headers['strict-transport-security']).toBeUndefined();

    // In a browser: the UI is cross-origin isolated, and connect-src lets it call only its own origins.
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'] });
    try {
      const page = await (await browser.newContext()).newPage();
      const loaded = await page.goto(`${gw.url}/`);
      expect(loaded?.status()).toBe(200);
      const seen = await page.evaluate(async () => {
        const violations: string[] = [];
        document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.violatedDirective} ${e.blockedURI}`));
        const tryFetch = (u: string) => fetch(u).then((r) => String(r.status), (e: Error) => `blocked: ${e.name}`);
        const own = await tryFetch('/health');
        const other = await tryFetch('https://evil.example.net/steal');
        await new Promise((r) => setTimeout(r, 100));
        return { isolated: window.crossOriginIsolated, own, other, violations };
      });
      expect(seen.isolated).toBe(true);
      expect(seen.own).toBe('200');
      expect(seen.other).toMatch(/^blocked/);
      expect(seen.violations.some((v) => v.startsWith('connect-src https://evil.example.net'))).toBe(true);
    } finally {
      await browser.close();
    }
  }, 30_000);

  it('USE_REDIS_LIMITER, REDIS_URL, window and per-window', async () => {
    const t = as(await token({ sub: `rl-${randomUUID()}`, roles: ['user'] }));
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await http.send(`${(i % 2 ? replica : gw).url}/api/me`, { headers: t })).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    // The 21st, on either replica: both count in the same Redis bucket.
    for (const g of [gw, replica]) {
      const r = await http.send(`${g.url}/api/me`, { headers: t });
      expect([r.status, r.reason]).toEqual([429, 'rate_limited']);
      expect(r.headers['ratelimit-policy']).toBe('"per_user";q=20;w=60');
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    const keys = await redisCli(6379, '--scan', '--pattern', `${prefix}*`);
    expect(keys.split('\n').filter(Boolean).length).toBeGreaterThan(0);
  });

  it('OTEL_EXPORTER_OTLP_ENDPOINT; dashboards for request rate, error rate, latency, policy denies', async () => {
    const t = as(await token({ sub: 'o-user', roles: ['user'] }));
    expect((await http.send(`${gw.url}/api/me`, { headers: t })).status).toBe(200);
    expect((await http.send(`${gw.url}/api/admin/audit`, { headers: t })).status).toBe(403);
    // Traces: exported where OTEL_EXPORTER_OTLP_ENDPOINT says, under OTEL_SERVICE_NAME (over the policy's name).
    const spans = await otlp.waitFor((s) => s.some((x) => x.attributes['portcullis.deny.reason'] === 'role_missing') && s.some((x) => x.name === 'GET api'), 10_000);
    const deny = spans.find((x) => x.attributes['portcullis.deny.reason'] === 'role_missing')!;
    expect(deny.service).toBe('rainref-gateway-test');
    expect(deny.attributes['http.route']).toBe('admin');
    expect(deny.attributes['http.response.status_code']).toBe(403);
    // Metrics: request rate, errors, latency, and denies by reason.
    const metrics = (await http.send(`${gw.admin}/metrics`)).text;
    expect(metrics).toMatch(/portcullis_denies_total\{route="admin",filter="authorize",reason="role_missing"\} \d+/);
    expect(metrics).toMatch(/portcullis_requests_total\{route="api",method="GET",status_class="2xx"\} \d+/);
    expect(metrics).toMatch(/portcullis_request_duration_seconds_bucket\{[^}]*route="api"/);
    // The Grafana dashboard and alert rules the Helm chart ships query metrics this gateway exports.
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'helm/portcullis/files/grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets?: { expr: string }[]; panels?: unknown[] }[] };
    const panels = dashboard.panels.flatMap((p) => [p, ...((p.panels ?? []) as typeof dashboard.panels)]);
    for (const title of ['Request rate', 'Error rate (5xx)', 'Latency p50 / p95 / p99 by route', 'Denies by reason']) {
      const panel = panels.find((p) => p.title === title);
      expect(panel, title).toBeDefined();
      for (const { expr } of panel!.targets ?? []) {
        for (const name of expr.match(/portcullis_[a-z_]+/g) ?? []) expect(metrics, `${title}: ${name}`).toContain(name.replace(/_(bucket|sum|count)$/, ''));
      }
    }
    expect(panels.find((p) => p.title === 'Denies by reason')!.targets![0]!.expr).toContain('sum by (filter, reason) (rate(portcullis_denies_total');
    const rules = parseYaml(readFileSync(join(ROOT, 'helm/portcullis/files/prometheus-rules.yaml'), 'utf8')) as { groups: { rules: { alert?: string; expr: string }[] }[] };
    const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert).map((r) => r.alert);
    expect(alerts).toEqual(expect.arrayContaining(['PortcullisHighErrorRate', 'PortcullisRouteHighLatency', 'PortcullisDenySpike']));
  });

  it('JWT rotation with overlapping keys', async () => {
    const next = await token({ sub: 'k-user', roles: ['user'] }, { kid: 'current' });
    const old = await token({ sub: 'k-user2', roles: ['user'] }, { kid: 'previous', secret: JWT_SECRET_PREVIOUS });
    const noKid = await new SignJWT({ sub: 'k-user3', roles: ['user'] }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('15m').sign(Buffer.from(JWT_SECRET_PREVIOUS));
    // During the cutover both keys are accepted, on every replica.
    for (const g of [gw, replica]) for (const t of [next, old, noKid]) expect((await http.send(`${g.url}/api/me`, { headers: as(t) })).status).toBe(200);
    // The cutover is over: the `previous` line is deleted and the policy reloaded. Its tokens now fail with a
    // 401 the UI can act on (sign in again); the current key's tokens keep working.
    const text = readFileSync(gw.policyFile, 'utf8');
    writeFileSync(gw.policyFile, text.split('\n').filter((l) => !l.includes('kid: previous')).join('\n'));
    const reload = await http.send(`${gw.admin}/reload`, { method: 'POST' });
    expect(reload.status).toBe(200);
    const r = await http.send(`${gw.url}/api/me`, { headers: as(old) });
    expect([r.status, r.reason]).toEqual([401, 'token_key_unknown']);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="rainref", error="invalid_token", error_description="token_key_unknown"');
    expect((await http.send(`${gw.url}/api/me`, { headers: as(noKid) })).reason).toBe('token_signature_invalid');
    expect((await http.send(`${gw.url}/api/me`, { headers: as(next) })).status).toBe(200);
  });
});
