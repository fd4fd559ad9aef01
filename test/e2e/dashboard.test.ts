// The admin dashboard as an operator sees it: headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens /dashboard/ on the admin listener of a real gateway process with real upstreams,
// its own redis-server and a TLS listener. The page must render under its strict CSP without a single
// violation, follow the gateway's state without a reload (a killed target, a stopped Redis, a refused
// reload), and its explain form must answer exactly what `portcullis explain` prints.
// DASHBOARD_SCREENSHOTS=1 also writes docs/dashboard.png and docs/dashboard-phone.png.
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts } from '../helpers/certs.ts';
import { ROOT, runCli, startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startRedis, type OwnRedis } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

// The few DOM names the page scripts use (the project's tsconfig has no DOM lib).
declare const document: {
  documentElement: { scrollWidth: number };
  addEventListener(type: 'securitypolicyviolation', listener: (e: { violatedDirective: string; blockedURI: string }) => void): void;
};
declare const window: { innerWidth: number; __violations: string[] };

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SECRET = 'dashboard-test-secret-0123456789abcdef0123456789abcdef';
const SCREENSHOTS = process.env.DASHBOARD_SCREENSHOTS === '1';

let one: RecordingUpstream;
let two: RecordingUpstream;
let redis: OwnRedis;
let gw: RunningGateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const problems: string[] = [];

const policy = (certFile: string, keyFile: string) => `
version: 1
listeners:
  - address: 127.0.0.1:0
  - { name: tls, address: 127.0.0.1:0, tls: { cert: "${certFile}", key: "${keyFile}" } }
admin: { address: 127.0.0.1:0 }
upstreams:
  app:
    targets: ["${one.url}", "${two.url}"]
    health: { failures: 1, ejection: 5m, max_ejection: 10m }
rate_limits:
  store: { redis: "${redis.url}", on_redis_failure: deny, key_prefix: "dashboard-e2e:", probe_interval: 100ms, command_timeout: 200ms }
  per_ip: { limit: 10000, window: 1m }
auth:
  default: { provider: main }
  providers:
    main:
      jwt: { issuer: https://id.example.com, algorithms: [HS256], keys: [{ kid: key-2026, secret: "\${env:JWT_SECRET}" }] }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    auth: none
    rate_limit: per_ip
  - name: forms
    match: { path_prefix: /forms, methods: [GET, POST] }
    upstream: app
    auth: none
    csrf: { trusted_origins: [https://app.example.com] }
  - name: account
    match: { path_prefix: /account }
    upstream: app
  - name: public
    match: { path_prefix: /public, methods: [GET] }
    upstream: app
    auth: none
`;

async function openPage(viewport: { width: number; height: number }): Promise<{ context: BrowserContext; page: Page }> {
  const c = await browser.newContext({ viewport });
  const p = await c.newPage();
  // Collected before any page script runs: every CSP violation, console error and uncaught error.
  await p.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  p.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  p.on('pageerror', (e) => problems.push(`pageerror: ${String(e)}`));
  return { context: c, page: p };
}

async function violations(p: Page): Promise<string[]> {
  return p.evaluate(() => window.__violations);
}

beforeAll(async () => {
  [one, two, redis] = await Promise.all([startUpstream(), startUpstream(), startRedis()]);
  const certs = makeCerts(); // valid for 2 days: the page must warn
  gw = await startGateway(policy(certs.cert, certs.key), { env: { JWT_SECRET: SECRET } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
  });
  ({ context, page } = await openPage({ width: 1280, height: 900 }));
  // Some traffic, so the routes have rates, latencies and deny reasons.
  for (let i = 0; i < 12; i++) {
    await fetch(`${gw.url}/public/item/${i}`);
    await fetch(`${gw.url}/api/items`);
    await fetch(`${gw.url}/account/me`); // 401 token_missing
    await fetch(`${gw.url}/forms/save`, { method: 'POST', headers: { origin: 'https://evil.example.com' } }); // 403 cross_site_request
  }
}, 60_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await gw?.stop();
  await Promise.all([one?.close(), two?.close(), redis?.stop()]);
});

describe('the dashboard on the admin listener', () => {
  it('serves the page under the strict CSP, with script and style as files of their own', async () => {
    const res = await fetch(`${gw.admin}/dashboard/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'"]) expect(csp).toContain(directive);
    const html = await res.text();
    expect(html).toContain('<script type="module" src="/dashboard/dashboard.js"></script>');
    expect(html).not.toMatch(/<script>|<style|style="/); // no inline script or style
    expect(html).not.toMatch(/(src|href)="(?!\/dashboard\/|data:|#)/); // nothing loaded from elsewhere
    for (const [file, type] of [['dashboard.js', 'text/javascript'], ['dashboard.css', 'text/css']] as const) {
      const r = await fetch(`${gw.admin}/dashboard/${file}`);
      expect(r.headers.get('content-type')).toContain(type);
      expect(await r.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/); // no CDN, no external font
    }
    // DNS rebinding: a page whose name points at the admin address is not answered.
    const rebound = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      get(`${gw.admin}/dashboard/state`, { headers: { host: 'attacker.example:9901' } }, (r) => {
        let body = '';
        r.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      }).on('error', reject);
    });
    expect(rebound.status).toBe(403);
    expect((JSON.parse(rebound.body) as { reason: string }).reason).toBe('host_not_allowed');
  });

  it('renders the routes of the policy: match, upstream, filter chain, live rates and deny reasons', async () => {
    await page.goto(`${gw.admin}/dashboard/`);
    const routes = page.locator('[data-route]');
    await waitFor(async () => (await routes.count()) === 4, 10_000);
    expect(await routes.evaluateAll((els) => els.map((e) => (e as unknown as { dataset: { route: string } }).dataset.route))).toEqual(['api', 'forms', 'account', 'public']);
    const forms = page.locator('[data-route="forms"]');
    expect(await forms.locator('.match').textContent()).toBe('GET,POST /forms/*');
    expect(await forms.locator('.chain li').allTextContents()).toEqual(['1. csrf']);
    expect(await page.locator('[data-route="account"] .chain li').allTextContents()).toEqual(['1. jwt']);
    // The live window comes from the metrics registry: requests were counted, denies named.
    await waitFor(async () => (await forms.locator('.denies').textContent())?.includes('cross_site_request'), 10_000);
    expect(await page.locator('[data-route="account"] .denies').textContent()).toContain('token_missing');
    expect(await page.locator('[data-route="public"] [data-stat="rps"]').textContent()).toMatch(/^\d+(\.\d+)?$/);
    expect(await page.locator('[data-route="public"] [data-stat="p99"]').textContent()).toMatch(/ms$/);
    expect(await page.locator('[data-route="public"] svg.spark').count()).toBe(3);
    // Identity, policy and certificates.
    expect(await page.locator('[data-provider="main"]').textContent()).toContain('key-2026');
    expect(await page.locator('#policy-hash').textContent()).toMatch(/^[0-9a-f]{16}$/);
    const cert = page.locator('[data-cert="tls"]');
    await expect.poll(() => cert.getAttribute('class')).toContain('warning');
    expect(await cert.textContent()).toContain('renew');
    expect(await violations(page)).toEqual([]);
  });

  it('answers the explain form exactly as `portcullis explain` does', async () => {
    const cases = [
      { method: 'POST', url: 'https://gw.example.com/forms/save', headers: ['Origin: https://evil.example.com'] },
      { method: 'GET', url: '/account/me', headers: [`Authorization: Bearer not-a-token`] },
      { method: 'GET', url: '/api/items?x=1', headers: [] },
      { method: 'DELETE', url: '/public/x', headers: [] },
      { method: 'GET', url: '/public/y', headers: [], clientIp: '2001:db8::7' },
    ] as { method: string; url: string; headers: string[]; clientIp?: string }[];
    for (const c of cases) {
      await page.fill('#explain-method', c.method);
      await page.fill('#explain-url', c.url);
      await page.fill('#explain-headers', c.headers.join('\n'));
      await page.fill('#explain-client-ip', c.clientIp ?? '');
      const answered = page.waitForResponse((r) => r.url().endsWith('/dashboard/explain'));
      await page.click('#explain-submit');
      await answered;
      await waitFor(async () => ((await page.locator('#explain-json').textContent()) ?? '').includes(`"request": "${c.method} ${c.url}"`));
      const shown = await page.locator('#explain-json').textContent();
      const cli = await runCli(['explain', gw.policyFile, c.method, c.url, ...c.headers.flatMap((x) => ['-H', x]), ...(c.clientIp ? ['--client-ip', c.clientIp] : [])], { JWT_SECRET: SECRET });
      expect(cli.code).toBe(0);
      expect(shown).toBe(cli.stdout);
    }
    // The decisions table and the answer line.
    expect(await page.locator('#explain-answer').getAttribute('data-answer')).toBe('forward app');
    await page.fill('#explain-method', 'POST');
    await page.fill('#explain-url', 'https://gw.example.com/forms/save');
    await page.fill('#explain-headers', 'Origin: https://evil.example.com');
    await page.fill('#explain-client-ip', '');
    await page.click('#explain-submit');
    await waitFor(async () => (await page.locator('#explain-answer').getAttribute('data-answer')) === '403 cross_site_request');
    // A bad client address is refused by the endpoint, not explained.
    const badIp = await fetch(`${gw.admin}/dashboard/explain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method: 'GET', url: '/', client_ip: 'nope' }) });
    expect(badIp.status).toBe(400);
    expect(((await badIp.json()) as { reason: string }).reason).toBe('invalid_explain_request');
    const form = await fetch(`${gw.admin}/dashboard/explain`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'method=GET&url=/' });
    expect(form.status).toBe(415);
    expect(await page.locator('#explain-decisions tbody tr').evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: { decision: string } }).dataset.decision))).toEqual(['deny']);
    expect(await violations(page)).toEqual([]);
  });

  it('shows a target ejected, with its reason, after it is killed', async () => {
    const dead = `${two.url}/`;
    await two.close();
    // Round robin: within a few requests one goes to the dead target, fails to connect, and ejects it
    // (the request itself is retried on the live target).
    for (let i = 0; i < 4; i++) expect((await fetch(`${gw.url}/public/after-kill/${i}`)).status).toBe(200);
    const row = page.locator(`[data-target="${dead}"]`);
    await waitFor(async () => (await row.getAttribute('data-state')) === 'ejected', 10_000);
    expect(await row.locator('.ejection').textContent()).toContain('upstream_unreachable');
    expect(await page.locator(`[data-target="${one.url}/"]`).getAttribute('data-state')).toBe('healthy');
  });

  it('shows the Redis failure mode in force after Redis is stopped', async () => {
    const store = page.locator(`[data-store="${redis.url}/0"]`);
    await waitFor(async () => (await store.getAttribute('data-up')) === 'true', 10_000);
    await redis.stop();
    // The next decision fails: the store is marked down and `deny` answers 503.
    await waitFor(async () => (await fetch(`${gw.url}/api/items`)).status === 503, 10_000);
    await waitFor(async () => (await store.getAttribute('data-up')) === 'false', 10_000);
    expect(await store.locator('[data-failure-mode]').textContent()).toBe('on_redis_failure: deny');
    expect(await store.textContent()).toContain('503 ratelimit_unavailable');
    expect(await store.textContent()).toMatch(/since \d+ s ago/);
  });

  it('shows a refused reload and its error, the policy in force unchanged', async () => {
    const hash = await page.locator('#policy-hash').textContent();
    writeFileSync(gw.policyFile, policy('/nonexistent.crt', '/nonexistent.key').replace('upstream: app\n    auth: none\n    rate_limit', 'upstream: nowhere\n    auth: none\n    rate_limit'));
    const res = await fetch(`${gw.admin}/reload`, { method: 'POST' });
    expect(res.status).toBe(422);
    const refused = page.locator('[data-reload="refused"]').first();
    await waitFor(async () => (await refused.count()) > 0, 10_000);
    expect(await refused.textContent()).toContain('unknown upstream "nowhere"');
    expect(await page.locator('#policy-hash').textContent()).toBe(hash);
    expect(await violations(page)).toEqual([]);

    if (SCREENSHOTS) {
      await page.screenshot({ path: join(ROOT, 'docs/dashboard.png'), fullPage: true });
    }
  });

  it('is usable on a phone-sized screen: nothing wider than the viewport', async () => {
    const phone = await openPage({ width: 390, height: 844 });
    try {
      await phone.page.goto(`${gw.admin}/dashboard/`);
      await waitFor(async () => (await phone.page.locator('[data-route]').count()) === 4, 10_000);
      await waitFor(async () => (await phone.page.locator('[data-target]').count()) === 2, 10_000);
      const widths = await phone.page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      expect(widths[0]).toBeLessThanOrEqual(widths[1]!);
      expect(await violations(phone.page)).toEqual([]);
      if (SCREENSHOTS) await phone.page.screenshot({ path: join(ROOT, 'docs/dashboard-phone.png'), fullPage: true });
    } finally {
      await phone.context.close();
    }
    expect(problems).toEqual([]);
  });
});
