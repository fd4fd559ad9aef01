// OIDC sessions over time and across replicas: the access token (3 s at the test provider) is refreshed
// with the refresh token shortly before it expires, once for parallel requests; two gateway replicas
// share a Redis session store, so a session made on one works on the other and a logout on one ends it
// on both (revocation). Real provider, real Redis (a key prefix of this test's own), real gateways.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginAtOp, startOp, type TestOp } from '../helpers/oidc-provider.ts';
import { freePort } from '../helpers/redis-server.ts';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const COOKIE_SECRET = '9c4e1a7f3b8d2e6a0c5f9b1d7e3a8c2f6b0d4e9a1c7f3b5d';
const COOKIE = '__Host-portcullis-sso';
const TTL_S = 3;
let op: TestOp;
let app: RecordingUpstream;
let a: RunningGateway;
let b: RunningGateway;
let baseA: string;
let baseB: string;

function policy(port: number, prefix: string): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:${port} }]
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
        scopes: [openid, email, groups]
        allowed_groups: [staff]
        cookie_secrets: ["\${env:COOKIE_SECRET}"]
        session_store: redis
        redis: redis://127.0.0.1:6379
        redis_key_prefix: "${prefix}"
        refresh_before: 1s
        claims_to_headers: { sub: X-User-Id }
routes:
  - { name: app, match: { path_prefix: / }, upstream: app }
`;
}

beforeAll(async () => {
  const [pa, pb] = [await freePort(), await freePort()];
  baseA = `http://127.0.0.1:${pa}`;
  baseB = `http://127.0.0.1:${pb}`;
  op = await startOp({ redirectUris: [`${baseA}/oauth2/callback`, `${baseB}/oauth2/callback`], postLogoutRedirectUris: [`${baseA}/`, `${baseB}/`], accessTokenTtl: TTL_S });
  app = await startUpstream();
  const prefix = `test:oidc:${randomUUID()}:`;
  const env = { OIDC_CLIENT_SECRET: op.clientSecret, COOKIE_SECRET };
  [a, b] = await Promise.all([startGateway(policy(pa, prefix), { env }), startGateway(policy(pb, prefix), { env })]);
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([op?.close(), app?.close()]);
});

async function signIn(base: string): Promise<{ browser: Browser; at: number }> {
  const browser = new Browser();
  const callback = await loginAtOp(browser, `${base}/home`, op, 'alice');
  const at = Date.now(); // the tokens are issued after this instant
  expect((await browser.navigate(callback)).status).toBe(302);
  return { browser, at };
}

const api = { headers: { accept: 'application/json' } };

describe('refresh', () => {
  it('refreshes the access token shortly before it expires, and the session goes on', async () => {
    const { browser, at } = await signIn(baseA);
    const refreshesBefore = op.grants.filter((g) => g === 'refresh_token').length;
    const refreshedAt = await waitFor(async () => {
      const r = await browser.request(`${baseA}/data`, api);
      expect(r.status).toBe(200);
      return op.grants.filter((g) => g === 'refresh_token').length > refreshesBefore ? Date.now() : null;
    }, 15_000);
    // never before the token's lifetime (its expires_in may be rounded down a second) less refresh_before (1 s)
    expect(refreshedAt - at).toBeGreaterThanOrEqual((TTL_S - 1) * 1000 - 1000 - 50);
    // the refreshed session keeps working past the first token's expiry, on both replicas
    expect((await browser.request(`${baseA}/data`, api)).status).toBe(200);
    for (const [k, v] of browser.cookies(baseA)) browser.cookies(baseB).set(k, v);
    expect((await browser.request(`${baseB}/data`, api)).status).toBe(200);
    expect(app.received.at(-1)!.headers['x-user-id']).toBe('alice');
  });

  it('spends the refresh token once for parallel requests that find the token expiring', async () => {
    const { browser } = await signIn(baseA);
    // wait until the token is due for refresh (expiry - 1 s), then send 6 requests at once
    await new Promise((r) => setTimeout(r, (TTL_S - 1) * 1000 + 100));
    const before = op.grants.filter((g) => g === 'refresh_token').length;
    const results = await Promise.all(Array.from({ length: 6 }, () => browser.request(`${baseA}/data`, api)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(op.grants.filter((g) => g === 'refresh_token').length - before).toBe(1);
  });
});

describe('replicas sharing a Redis session store', () => {
  it('a session made on one replica works on the other; logout on one ends it on both', async () => {
    const { browser } = await signIn(baseA);
    const cookies = [...browser.cookies(baseA)].filter(([k]) => k.startsWith(COOKIE));
    expect(cookies.length).toBeGreaterThan(0);
    const other = new Browser(); // the same cookie, presented to replica B (a copied cookie, too)
    for (const [k, v] of cookies) other.cookies(baseB).set(k, v);
    expect((await other.request(`${baseB}/data`, api)).status).toBe(200);
    const out = await browser.navigate(`${baseA}/oauth2/logout`);
    expect(out.status).toBe(302);
    expect(out.location!.startsWith(op.issuer)).toBe(true);
    const after = await other.request(`${baseB}/data`, api);
    expect(after.status).toBe(401);
    expect(JSON.parse(after.body).reason).toBe('oidc_session_expired');
  });

  it('is ready once the provider is discovered and Redis answers', async () => {
    const ready = await fetch(`${a.admin}/readyz`);
    expect(ready.status).toBe(200);
  });
});
