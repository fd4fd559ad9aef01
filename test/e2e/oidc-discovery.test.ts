// The gateway starts while its OpenID Provider is down: it serves (open routes work), reports not ready
// with the reason, answers sign-ins with 503 oidc_provider_unavailable instead of failing open, retries
// discovery in the background, and signs users in once the provider is up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginAtOp, startOp, type TestOp } from '../helpers/oidc-provider.ts';
import { freePort } from '../helpers/redis-server.ts';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let op: TestOp | undefined;
let app: RecordingUpstream;
let gw: RunningGateway;
let base: string;
let opPort: number;

beforeAll(async () => {
  opPort = await freePort();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  app = await startUpstream();
  gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:${port} }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${app.url}" } }
auth:
  default: sso
  providers:
    sso:
      oidc:
        issuer: "http://127.0.0.1:${opPort}"
        client_id: portcullis-test
        client_secret: a-client-secret-for-tests-only-0123456789
        scopes: [openid, groups]
        allowed_groups: [staff]
        timeout: 1s
        cookie_secrets: ["4a8e2c6f0b3d7e1a5c9f2b6d0a4e8c1f5b9d3e7a0c4f8b2d"]
routes:
  - { name: open, match: { path: /status }, upstream: app, auth: none }
  - { name: app, match: { path_prefix: / }, upstream: app }
`);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([op?.close(), app?.close()]);
});

describe('an OpenID Provider that is down at start', () => {
  it('serves open routes, is not ready, and answers sign-ins with 503 until discovery works', async () => {
    expect((await fetch(`${base}/status`)).status).toBe(200);
    const ready = await fetch(`${gw.admin}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/OpenID Provider of sso not discovered/);
    const b = new Browser();
    const nav = await b.navigate(`${base}/home`);
    expect(nav.status).toBe(503);
    expect(JSON.parse(nav.body).reason).toBe('oidc_provider_unavailable');
    expect(nav.headers.get('retry-after')).toBe('5');
    // an API call without a session is still a plain 401 (no provider needed to say so)
    const api = await b.request(`${base}/api`, { headers: { accept: 'application/json' } });
    expect(JSON.parse(api.body).reason).toBe('oidc_session_missing');
    expect(app.received.filter((r) => r.url !== '/status')).toHaveLength(0);
  });

  it('discovers the provider once it is up, and signs users in', async () => {
    op = await startOp({ port: opPort, redirectUris: [`${base}/oauth2/callback`], postLogoutRedirectUris: [`${base}/`] });
    await waitFor(async () => (await fetch(`${gw.admin}/readyz`)).status === 200, 40_000);
    const b = new Browser();
    const callback = await loginAtOp(b, `${base}/home`, op, 'alice');
    expect((await b.navigate(callback)).location).toBe(`${base}/home`);
    expect((await b.navigate(`${base}/home`)).status).toBe(200);
  }, 60_000);
});
