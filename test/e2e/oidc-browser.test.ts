// The OpenID Connect sign-in as a real browser lives it: headless Chromium (Debian's `chromium`, driven by
// playwright-core) visits a legacy app that has no auth of its own behind the gateway (TLS listener with
// certificates made by openssl: `__Host-` cookies need Secure), signs in at a real OpenID Provider
// (node-oidc-provider's login screen), lands on the page with the identity headers, keeps the session
// across reloads and an access-token refresh, and logs out at both ends. Forged callbacks, replayed codes,
// tampered cookies and fetch() calls without a session are refused the way a browser needs.
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SessionCodec } from '../../src/auth/oidc/codec.ts';
import { makeCerts } from '../helpers/certs.ts';
import { startOp, type TestOp } from '../helpers/oidc-provider.ts';
import { freePort } from '../helpers/redis-server.ts';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

declare const document: { body: { innerText: string } };

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const COOKIE_SECRET = '2e7a4c9f1b6d3e8a5c0f7b2d9e4a1c6f3b8d5e0a7c2f9b4d';
const COOKIE = '__Host-portcullis-sso';
const TTL_S = 4;
let op: TestOp;
let app: RecordingUpstream;
let gw: RunningGateway;
/** The gateway as the browser addresses it: https://localhost:PORT. */
let site: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  const certs = makeCerts();
  const port = await freePort();
  site = `https://localhost:${port}`;
  op = await startOp({ redirectUris: [`${site}/oauth2/callback`], postLogoutRedirectUris: [`${site}/bye`], accessTokenTtl: TTL_S });
  app = await startUpstream();
  // The legacy app: trusts the headers the gateway sets, and knows nothing of sign-in.
  app.handler = (req, res) => {
    if (req.url === '/api/me') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ user: req.headers['x-user-id'] ?? null }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>legacy</title><p>page ${req.url}</p><p>user=${req.headers['x-user-id'] ?? '-'} email=${req.headers['x-user-email'] ?? '-'} groups=${req.headers['x-user-groups'] ?? '-'}</p>`);
  };
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:${port}
    tls: { cert: "${certs.cert}", key: "${certs.key}" }
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${app.url}" } }
auth:
  default: sso
  providers:
    sso:
      oidc:
        issuer: "${op.issuer}"
        client_id: ${op.clientId}
        client_secret: "\${env:OIDC_CLIENT_SECRET}"
        public_url: "${site}"
        scopes: [openid, email, profile, groups]
        allowed_email_domains: [example.com]
        allowed_groups: [staff]
        post_logout_redirect: /bye
        cookie_secrets: ["\${env:COOKIE_SECRET}"]
        refresh_before: 1s
        claims_to_headers: { sub: X-User-Id, email: X-User-Email, groups: X-User-Groups }
        max_claim_header_size: 8KiB
routes:
  - { name: bye, match: { path: /bye }, upstream: app, auth: none }
  - { name: public, match: { path: /public }, upstream: app, auth: none }
  - { name: app, match: { path_prefix: / }, upstream: app }
`, { env: { OIDC_CLIENT_SECRET: op.clientSecret, COOKIE_SECRET } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await Promise.all([op?.close(), app?.close()]);
});

beforeEach(async () => {
  app.received.length = 0;
  if (context) await context.close();
  // The test CA is not in Chromium's store: its errors are ignored, the origin is still https.
  context = await browser.newContext({ ignoreHTTPSErrors: true });
  page = await context.newPage();
});

const text = (p: Page) => p.evaluate(() => document.body.innerText);

/** Fills the provider's login screen and waits to be back on the gateway. */
async function signInAtProvider(p: Page, login: string): Promise<void> {
  await p.waitForURL((u) => u.href.startsWith(op.issuer));
  await p.fill('input[name=login]', login);
  await p.fill('input[name=password]', 'any password');
  await p.click('button[type=submit]');
  await p.waitForURL((u) => u.href.startsWith(site) && !u.pathname.startsWith('/oauth2/'));
}

describe('the journey in Chromium', () => {
  it('visit, sign in at the provider, land on the page with the identity headers; reload keeps the session', async () => {
    await page.goto(`${site}/reports?year=2024`);
    await signInAtProvider(page, 'alice');
    expect(page.url()).toBe(`${site}/reports?year=2024`);
    expect(await text(page)).toContain('user=alice email=alice@example.com groups=staff,admins');
    const cookies = await context.cookies(site);
    const session = cookies.filter((c) => c.name === COOKIE || c.name.startsWith(`${COOKIE}.`));
    expect(session.length).toBeGreaterThan(0);
    for (const c of session) expect(c).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: '/' });
    expect(cookies.some((c) => c.name.includes('-login-'))).toBe(false);
    // reload: the same session, no trip to the provider
    const before = op.requests.length;
    await page.reload();
    expect(await text(page)).toContain('user=alice');
    expect(op.requests.length).toBe(before);
  });

  it('a session larger than one cookie is split into numbered cookies and read back whole', async () => {
    await page.goto(`${site}/big`);
    await signInAtProvider(page, 'dave');
    expect(await text(page)).toContain('user=dave');
    expect(await text(page)).toContain('project-149-team');
    const names = (await context.cookies(site)).map((c) => c.name).filter((n) => n.startsWith(COOKIE)).sort();
    expect(names.length).toBeGreaterThan(1);
    expect(names).toEqual(names.map((_, i) => `${COOKIE}.${i}`));
    await page.reload();
    expect(await text(page)).toContain('user=dave');
  });

  it('refreshes the session after the access token expires, without the user noticing', async () => {
    await page.goto(`${site}/home`);
    await signInAtProvider(page, 'alice');
    const refreshes = () => op.grants.filter((g) => g === 'refresh_token').length;
    const before = refreshes();
    await waitFor(async () => {
      await page.reload();
      expect(page.url()).toBe(`${site}/home`);
      expect(await text(page)).toContain('user=alice');
      return refreshes() > before;
    }, 20_000);
    // and past the first token's lifetime, still signed in, with no new login at the provider
    await page.reload();
    expect(await text(page)).toContain('user=alice');
  });

  it('logout ends the session at the gateway and at the provider', async () => {
    await page.goto(`${site}/home`);
    await signInAtProvider(page, 'alice');
    await page.goto(`${site}/oauth2/logout`);
    // the provider's RP-initiated logout asks to confirm
    await page.waitForURL((u) => u.href.startsWith(op.issuer));
    await page.click('button[name=logout]');
    await page.waitForURL(`${site}/bye`);
    expect((await context.cookies(site)).filter((c) => c.name.startsWith(COOKIE))).toEqual([]);
    // the provider's session is gone too: the next visit shows its login screen again
    await page.goto(`${site}/home`);
    await page.waitForURL((u) => u.href.startsWith(op.issuer));
    expect(await page.locator('input[name=login]').count()).toBe(1);
  });

  it('a fetch() from the page without a session gets 401 with a reason, not a redirect', async () => {
    await page.goto(`${site}/public`);
    const r = await page.evaluate(async () => {
      const res = await fetch('/api/me');
      return { status: res.status, redirected: res.redirected, challenge: res.headers.get('www-authenticate'), body: await res.json() };
    });
    expect(r).toMatchObject({ status: 401, redirected: false, body: { reason: 'oidc_session_missing' } });
    expect(r.challenge).toContain('login_uri="/oauth2/login"');
    expect(app.received.filter((x) => x.url === '/api/me')).toHaveLength(0);
  });

  it('a fetch() with a session reaches the app as the user; with a tampered cookie it is refused', async () => {
    await page.goto(`${site}/home`);
    await signInAtProvider(page, 'alice');
    const me = () => page.evaluate(async () => {
      const res = await fetch('/api/me');
      return { status: res.status, body: await res.json() };
    });
    expect(await me()).toEqual({ status: 200, body: { user: 'alice' } });
    const cookies = (await context.cookies(site)).filter((c) => c.name.startsWith(COOKIE));
    const first = cookies.sort((x, y) => x.name.localeCompare(y.name))[0]!;
    // one character of the ciphertext changed (the protected header and IV take the first ~100)
    const tampered = first.value.slice(0, 200) + (first.value[200] === 'A' ? 'B' : 'A') + first.value.slice(201);
    await context.addCookies([{ name: first.name, value: tampered, url: site, secure: true, httpOnly: true, sameSite: 'Lax' }]);
    expect(await me()).toMatchObject({ status: 401, body: { reason: 'oidc_session_invalid' } });
    // the refusal cleared the bad cookie
    expect((await context.cookies(site)).filter((c) => c.name.startsWith(COOKIE) && !c.name.includes('-login-'))).toEqual([]);
    // a foreign cookie (sealed by another gateway's secret) and an expired one (the right secret, past its end)
    const now = Date.now();
    const body = (end: number) => ({ sub: 'alice', claims: { sub: 'alice', email: 'alice@example.com' }, created: now - 60_000, seen: now - 1000, expires: now + 3_600_000, rt: null, idt: null, end });
    const foreign = await new SessionCodec(['7b3e9d1f5a2c8e4b0d6f2a9c5e1b7d3f9a5c1e7b3d9f5a1c'], 'sso').seal('session', body(now + 3_600_000), now + 3_600_000);
    const expired = await new SessionCodec([COOKIE_SECRET], 'sso').seal('session', body(now - 1000), now + 60_000);
    for (const [value, reason] of [[foreign, 'oidc_session_invalid'], [expired, 'oidc_session_expired']] as const) {
      await context.addCookies([{ name: COOKIE, value, url: site, secure: true, httpOnly: true, sameSite: 'Lax' }]);
      expect(await me()).toMatchObject({ status: 401, body: { reason } });
    }
    expect(app.received.filter((x) => x.url === '/api/me')).toHaveLength(1);
  });

  it('refuses a callback with a wrong state and a replayed code', async () => {
    let callback: string | null = null;
    page.on('request', (r) => {
      if (r.url().startsWith(`${site}/oauth2/callback`)) callback = r.url();
    });
    await page.goto(`${site}/home`);
    await signInAtProvider(page, 'alice');
    expect(callback).not.toBeNull();
    // the same callback again: its sign-in state was spent
    const replay = await page.goto(callback!);
    expect(replay!.status()).toBe(400);
    expect(await replay!.json()).toMatchObject({ reason: 'oidc_state_invalid' });
    // a forged state
    const forged = new URL(callback!);
    forged.searchParams.set('state', 'Z'.repeat(43));
    const wrong = await page.goto(forged.href);
    expect(wrong!.status()).toBe(400);
    expect(await wrong!.json()).toMatchObject({ reason: 'oidc_state_invalid' });
    // the session made by the genuine callback is still there
    await page.goto(`${site}/home`);
    expect(await text(page)).toContain('user=alice');
  });

  it('a user outside the allowed domain is refused at the callback and gets no session', async () => {
    await page.goto(`${site}/home`);
    await page.waitForURL((u) => u.href.startsWith(op.issuer));
    await page.fill('input[name=login]', 'eve');
    await page.fill('input[name=password]', 'x');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(`${site}/oauth2/callback`)),
      page.click('button[type=submit]'),
    ]);
    expect(response.status()).toBe(403);
    expect(await response.json()).toMatchObject({ reason: 'oidc_user_not_allowed' });
    expect((await context.cookies(site)).filter((c) => c.name.startsWith(COOKIE) && !c.name.includes('-login-'))).toEqual([]);
  });
});
