// The browser protections as a real browser sees them: headless Chromium (Debian's `chromium`, driven by
// playwright-core) loads pages from one localhost origin and calls the gateway on another.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

// The few DOM names the page scripts use (the project's tsconfig has no DOM lib).
declare const document: { cookie: string; addEventListener(type: 'securitypolicyviolation', listener: (e: { violatedDirective: string }) => void): void };

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = '7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb2a2d7c0e4b5d6a';

interface PageServer {
  server: Server;
  origin: string;
  requests: string[];
  close(): Promise<void>;
}

/** A page server on its own origin (127.0.0.1:PORT): the "frontend" whose scripts call the gateway. */
async function startPageServer(): Promise<PageServer> {
  const requests: string[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>frontend</title><p>frontend</p>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    origin,
    requests,
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

let upstream: RecordingUpstream;
let allowedSite: PageServer;
let otherSite: PageServer;
let gw: RunningGateway;
/** The gateway as the browser addresses it: another origin than the pages (localhost vs 127.0.0.1). */
let gateway: string;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  [upstream, allowedSite, otherSite] = await Promise.all([startUpstream(), startPageServer(), startPageServer()]);
  upstream.handler = (req, res, body) => {
    if (req.url?.startsWith('/app/')) {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'set-cookie': ['session=very-secret-session; Path=/', 'visible=hello; Path=/'],
      });
      res.end('<!doctype html><title>app</title><p>served through the gateway</p>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'upstream-id' });
    res.end(JSON.stringify({ ok: true, method: req.method, cookie: req.headers.cookie ?? null, body: body.toString() }));
  };
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
upstreams:
  app: { url: "${upstream.url}" }
cors:
  web:
    origins: ["\${env:FRONTEND_ORIGIN}"]
    credentials: true
    methods: [GET, POST]
    allow_headers: [Content-Type, X-CSRF-Token]
    expose_headers: [X-Request-ID]
csrf:
  api: { token: "\${env:CSRF_TOKEN}", trusted_origins: ["\${env:FRONTEND_ORIGIN}"] }
headers:
  default: {}
  page:
    csp: { default-src: ["'self'"], connect-src: ["'self'"] }
cookies:
  default: { script_readable: [visible] }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    cors: web
    csrf: api
  - name: pages
    match: { path_prefix: /app }
    upstream: app
    headers: page
`, { env: { FRONTEND_ORIGIN: allowedSite.origin, CSRF_TOKEN: TOKEN } });
  gateway = gw.url.replace('127.0.0.1', 'localhost');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await Promise.all([upstream?.close(), allowedSite?.close(), otherSite?.close()]);
});

beforeEach(async () => {
  upstream.received.length = 0;
  if (page) await page.context().close();
  page = await (await browser.newContext()).newPage();
});

/** Runs a credentialed cross-origin POST from the current page; resolves with what the script could see. */
function callApi(p: Page, url: string, token: string): Promise<{ ok: boolean; status?: number; body?: unknown; requestId?: string | null; hidden?: string | null; error?: string }> {
  return p.evaluate(
    async ([u, t]) => {
      try {
        const r = await fetch(u!, { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json', 'x-csrf-token': t! }, body: '{"hello":"world"}' });
        return { ok: true, status: r.status, body: await r.json(), requestId: r.headers.get('x-request-id'), hidden: r.headers.get('cross-origin-opener-policy') };
      } catch (err) {
        return { ok: false, error: String(err) };
      }
    },
    [url, token],
  );
}

describe('CORS in Chromium', () => {
  it('lets the allowed origin make a credentialed, preflighted call and read the answer', async () => {
    await page.goto(allowedSite.origin + '/');
    const r = await callApi(page, `${gateway}/api/items`, TOKEN);
    expect(r).toMatchObject({ ok: true, status: 200, body: { ok: true, method: 'POST', body: '{"hello":"world"}' } });
    expect(r.requestId).toMatch(/^[0-9a-f-]{36}$/); // the gateway's id, readable because it is in expose_headers
    expect(r.hidden).toBeNull(); // not exposed: invisible to the script
    // the preflight was answered by the gateway: only the POST reached the upstream
    expect(upstream.received.map((x) => x.method)).toEqual(['POST']);
  });

  it('blocks a disallowed origin: its preflight is refused and nothing reaches the upstream', async () => {
    await page.goto(otherSite.origin + '/');
    const r = await callApi(page, `${gateway}/api/items`, TOKEN);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/TypeError/);
    expect(upstream.received).toHaveLength(0);
  });

  it('hides a simple cross-origin GET answer from a disallowed origin', async () => {
    await page.goto(otherSite.origin + '/');
    const r = await page.evaluate(async (u) => {
      try {
        await (await fetch(u)).text();
        return 'read';
      } catch (err) {
        return String(err);
      }
    }, `${gateway}/api/items`);
    expect(r).toMatch(/TypeError/);
  });
});

describe('cookies and isolation in Chromium', () => {
  it('keeps an HttpOnly cookie set through the gateway out of document.cookie', async () => {
    await page.goto(`${gateway}/app/login`);
    const visible = await page.evaluate(() => document.cookie);
    expect(visible).toBe('visible=hello');
    const stored = await page.context().cookies(gateway);
    expect(stored.find((c) => c.name === 'session')).toMatchObject({ value: 'very-secret-session', httpOnly: true, sameSite: 'Lax' });
    // and the browser still sends it back to the gateway's origin
    const echoed = await page.evaluate(async (u) => (await (await fetch(u)).json()) as { cookie: string }, `${gateway}/api/me`);
    expect(echoed.cookie).toContain('session=very-secret-session');
  });

  it('makes the page cross-origin isolated with COOP and COEP', async () => {
    await page.goto(`${gateway}/app/isolated`);
    expect(await page.evaluate(() => (globalThis as unknown as { crossOriginIsolated: boolean }).crossOriginIsolated)).toBe(true);
  });

  it('blocks a fetch to an origin missing from CSP connect-src, before it leaves the browser', async () => {
    await page.goto(`${gateway}/app/csp`);
    const result = await page.evaluate(async (other) => {
      const violations: string[] = [];
      document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
      const self = await fetch('/api/self').then((r) => r.status, (e) => String(e));
      const blocked = await fetch(`${other}/steal`).then((r) => r.status, (e) => String(e));
      await new Promise((r) => setTimeout(r, 50));
      return { self, blocked, violations };
    }, otherSite.origin);
    expect(result.self).toBe(200);
    expect(result.blocked).toMatch(/TypeError/);
    expect(result.violations).toContain('connect-src');
    expect(otherSite.requests.filter((r) => r.includes('/steal'))).toEqual([]);
  });
});
