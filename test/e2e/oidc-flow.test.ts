// OpenID Connect sign-in at the gateway, scripted over HTTP against a real OpenID Provider
// (node-oidc-provider) in front of a stand-in legacy app that has no auth of its own: the code flow with
// PKCE and state, the session cookie, the identity headers the app receives, refusals of forged state,
// replayed codes, tampered/expired/foreign cookies, users outside the allowed rules, refresh and logout.
import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SessionCodec } from '../../src/auth/oidc/codec.ts';
import { Browser, loginAtOp, startOp, type TestOp } from '../helpers/oidc-provider.ts';
import { freePort } from '../helpers/redis-server.ts';
import { startGateway, tempDir, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const COOKIE_SECRET = 'f3a9c1e7b5d2a8f4c6e0b3d7a1f9c5e2b8d4a6f0c3e7b1d5';
const COOKIE = '__Host-portcullis-sso';
let op: TestOp;
let app: RecordingUpstream;
let gw: RunningGateway;
/** A second replica in the middle of a secret rotation: seals with a new secret, still opens the old one. */
let gw2: RunningGateway;
let base: string;
let base2: string;
let base3: string;
/** A gateway that expects ES256 ID tokens from a provider that signs RS256. */
let base4: string;
let keyFile: string;
const NEW_SECRET = '5d8b2f6a9e1c4d7b0a3f6e9c2b5d8a1f4e7c0b3d6a9f2e5c';

beforeAll(async () => {
  const port = await freePort();
  const port2 = await freePort();
  base = `http://127.0.0.1:${port}`;
  base2 = `http://127.0.0.1:${port2}`;
  const port3 = await freePort();
  base3 = `http://127.0.0.1:${port3}`;
  base4 = `http://127.0.0.1:${await freePort()}`;
  // A client key made by openssl, for the gateway that authenticates with private_key_jwt.
  const dir = tempDir('portcullis-oidc-key-');
  keyFile = join(dir, 'client.pem');
  execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile], { stdio: 'pipe' });
  const jwk = { ...createPublicKey(readFileSync(keyFile)).export({ format: 'jwk' }), kid: 'gw-1', alg: 'RS256', use: 'sig' };
  op = await startOp({ redirectUris: [`${base}/oauth2/callback`, `${base2}/oauth2/callback`, `${base3}/oauth2/callback`, `${base4}/oauth2/callback`], postLogoutRedirectUris: [`${base}/bye`, `${base2}/bye`, `${base3}/bye`, `${base4}/bye`], accessTokenTtl: 3600, clientJwk: jwk });
  app = await startUpstream();
  app.handler = (req, res) => {
    res.writeHead(200, { 'content-type': 'text/html', 'set-cookie': 'app_pref=dark; Path=/' });
    res.end(`<!doctype html><p>hello ${req.headers['x-user-email'] ?? 'nobody'}</p>`);
  };
  const policy = (p: number) => `
version: 1
listeners: [{ address: 127.0.0.1:${p} }]
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
        scopes: [openid, email, profile, groups]
        allowed_email_domains: [example.com]
        allowed_groups: [staff]
        post_logout_redirect: /bye
        cookie_secrets: ["\${env:COOKIE_SECRET}"${p === port ? '' : ', "\${env:OLD_SECRET}"'}]
        roles_claim: groups
        claims_to_headers: { sub: X-User-Id, email: X-User-Email, groups: X-User-Groups }
audit: { write_methods: true }
rate_limits:
  per_user: { key: subject, limit: 3, window: 1h }
routes:
  - { name: bye, match: { path: /bye }, upstream: app, auth: none }
  - { name: limited, match: { path_prefix: /limited }, upstream: app, rate_limit: per_user }
  - { name: admin, match: { path_prefix: /admin }, upstream: app, authorize: { roles_any: [admins] } }
  - { name: audit, match: { path_prefix: /audit }, upstream: app, authorize: { roles_any: [auditors] } }
  - { name: app, match: { path_prefix: / }, upstream: app }
`;
  [gw, gw2] = await Promise.all([
    startGateway(policy(port), { env: { OIDC_CLIENT_SECRET: op.clientSecret, COOKIE_SECRET } }),
    startGateway(policy(port2), { env: { OIDC_CLIENT_SECRET: op.clientSecret, COOKIE_SECRET: NEW_SECRET, OLD_SECRET: COOKIE_SECRET } }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), gw2?.stop()]);
  await Promise.all([op?.close(), app?.close()]);
});

beforeEach(() => {
  app.received.length = 0;
});

async function signIn(login = 'alice', path = '/reports?year=2024', at = base): Promise<Browser> {
  const b = new Browser();
  const callback = await loginAtOp(b, at + path, op, login);
  expect(callback).toMatch(new RegExp(`^${at}/oauth2/callback\\?code=`));
  const done = await b.navigate(callback);
  expect(done.status).toBe(302);
  expect(done.location).toBe(at + path);
  return b;
}

describe('sign-in', () => {
  it('sends a navigation without a session to the provider with PKCE S256, state and nonce', async () => {
    const b = new Browser();
    const r = await b.navigate(`${base}/reports`);
    expect(r.status).toBe(302);
    const loc = new URL(r.location!);
    expect(loc.origin).toBe(op.issuer);
    expect(loc.searchParams.get('response_type')).toBe('code');
    expect(loc.searchParams.get('code_challenge_method')).toBe('S256');
    expect(loc.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loc.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(loc.searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(loc.searchParams.get('redirect_uri')).toBe(`${base}/oauth2/callback`);
    expect(loc.searchParams.get('scope')).toBe('openid email profile groups');
    const login = r.setCookies.find((c) => c.startsWith(`${COOKIE}-login-`))!;
    expect(login).toMatch(/; Path=\/; Max-Age=600; HttpOnly; Secure; SameSite=Lax/);
    expect(app.received).toHaveLength(0);
  });

  it('keeps a few unfinished sign-ins (tabs) and clears the older ones past that', async () => {
    const b = new Browser();
    const pending = () => [...b.cookies(base).keys()].filter((k) => k.startsWith(`${COOKIE}-login-`)).length;
    for (let i = 1; i <= 4; i++) {
      await b.navigate(`${base}/tab/${i}`);
      expect(pending()).toBe(i);
    }
    await b.navigate(`${base}/tab/5`);
    expect(pending()).toBe(1);
  });

  it('signs in, lands on the page asked for, and the app sees the identity headers', async () => {
    const b = await signIn();
    const session = [...b.cookies(base).keys()].filter((k) => k.startsWith(COOKIE));
    expect(session.length).toBeGreaterThan(0);
    expect(session.some((k) => k.includes('-login-'))).toBe(false); // the sign-in state cookie is gone
    const page = await b.navigate(`${base}/reports?year=2024`);
    expect(page.status).toBe(200);
    expect(page.body).toContain('hello alice@example.com');
    const seen = app.received.at(-1)!;
    expect(seen.headers['x-user-id']).toBe('alice');
    expect(seen.headers['x-user-email']).toBe('alice@example.com');
    expect(seen.headers['x-user-groups']).toBe('staff,admins');
    // the ID token's signature was checked against the provider's key set
    expect(op.requests.some((r) => r.startsWith('GET /jwks'))).toBe(true);
    // The app never sees the gateway's cookies; its own Set-Cookie still reaches the browser.
    expect(String(seen.headers.cookie ?? '')).not.toContain(COOKIE);
    expect(page.setCookies).toContain('app_pref=dark; Path=/');
    // A second request (reload) keeps the session without another trip to the provider.
    const before = op.requests.length;
    expect((await b.navigate(`${base}/other`)).status).toBe(200);
    expect(op.requests.length).toBe(before);
  });

  it('strips client-sent identity headers and lets authorize use the claims', async () => {
    const b = await signIn();
    const forged = await b.request(`${base}/x`, { headers: { 'x-user-id': 'root', 'x-user-email': 'root@example.com' } });
    expect(forged.status).toBe(200);
    expect(app.received.at(-1)!.headers['x-user-id']).toBe('alice');
    // roles come from the groups claim: alice is in admins, not in auditors
    expect((await b.request(`${base}/admin/panel`)).status).toBe(200);
    const audit = await b.request(`${base}/audit/log`);
    expect(audit.status).toBe(403);
    expect(JSON.parse(audit.body).reason).toBe('role_missing');
  });

  it('refuses users outside the allowed domain or groups, without a session', async () => {
    for (const login of ['eve', 'bob']) {
      const b = new Browser();
      const callback = await loginAtOp(b, `${base}/reports`, op, login);
      const r = await b.navigate(callback);
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body).reason).toBe('oidc_user_not_allowed');
      expect([...b.cookies(base).keys()].filter((k) => k.startsWith(COOKIE))).toEqual([]);
    }
  });

  it('returns only to same-origin paths after sign-in (no open redirect)', async () => {
    for (const rd of ['https://evil.test/x', '//evil.test/x', '/\\evil.test', 'javascript:alert(1)']) {
      const b = new Browser();
      const start = await b.navigate(`${base}/oauth2/login?rd=${encodeURIComponent(rd)}`);
      expect(start.status).toBe(302);
      const callback = await loginAtOp(b, `${base}/oauth2/login?rd=${encodeURIComponent(rd)}`, op, 'alice');
      const done = await b.navigate(callback);
      expect(done.status).toBe(302);
      expect(done.location).toBe(`${base}/`);
    }
    const b = new Browser();
    const callback = await loginAtOp(b, `${base}/oauth2/login?rd=${encodeURIComponent('/deep/link?a=1')}`, op, 'alice');
    expect((await b.navigate(callback)).location).toBe(`${base}/deep/link?a=1`);
  });
});

describe('activity', () => {
  it('re-seals a session whose activity record is older than a quarter of idle_timeout, beside the app\'s own cookies', async () => {
    const own = new SessionCodec([COOKIE_SECRET], 'sso');
    const now = Date.now();
    const b = new Browser();
    b.cookies(base).set(COOKIE, await own.seal('session', { sub: 'alice', claims: { sub: 'alice', email: 'alice@example.com', email_verified: true, groups: ['staff'] }, created: now - 1_800_000, seen: now - 1_200_000, expires: now + 3_600_000, rt: null, idt: null, end: now + 3_600_000 }, now + 3_600_000));
    const r = await b.navigate(`${base}/page`);
    expect(r.status).toBe(200);
    expect(r.setCookies).toContain('app_pref=dark; Path=/');
    const renewed = r.setCookies.find((c) => c.startsWith(`${COOKIE}=`))!;
    expect(renewed).toMatch(/; Path=\/; Max-Age=\d+; HttpOnly; Secure; SameSite=Lax$/);
    const opened = await own.open('session', b.cookies(base).get(COOKIE)!);
    expect(typeof opened === 'object' && (opened.seen as number) >= now).toBe(true);
    // a fresh activity record is not re-sealed on every request
    const again = await b.navigate(`${base}/page`);
    expect(again.setCookies.filter((c) => c.startsWith(COOKIE))).toEqual([]);
  });
});

describe('refresh with the provider', () => {
  /** The session in the browser's cookie, re-sealed with its access token due for refresh now. */
  async function dueNow(b: Browser): Promise<string> {
    const own = new SessionCodec([COOKIE_SECRET], 'sso');
    const s = await own.open('session', b.cookies(base).get(COOKIE)!);
    if (typeof s === 'string') throw new Error(`session did not open: ${s}`);
    const { exp: _exp, ...session } = s;
    b.cookies(base).set(COOKIE, await own.seal('session', { ...session, expires: Date.now() }, session.end as number));
    return session.rt as string;
  }

  it('refreshes an expiring access token, and ends the session once the provider revoked the refresh token', async () => {
    const b = await signIn();
    const api = { headers: { accept: 'application/json' } };
    const refreshes = () => op.grants.filter((g) => g === 'refresh_token').length;
    let before = refreshes();
    const rt = await dueNow(b);
    expect(rt).toEqual(expect.any(String));
    const ok = await b.request(`${base}/api`, api);
    expect(ok.status).toBe(200);
    expect(refreshes()).toBe(before + 1);
    expect(ok.setCookies.some((c) => c.startsWith(`${COOKIE}=`))).toBe(true); // the refreshed session
    // an admin revokes the user's refresh token at the provider: the next refresh is refused
    const current = await dueNow(b);
    expect(await op.revoke(current)).toBe(200);
    before = refreshes();
    const refused = await b.request(`${base}/api`, api);
    expect(refreshes()).toBe(before + 1);
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body).reason).toBe('oidc_session_expired');
    expect(b.cookies(base).has(COOKIE)).toBe(false);
  });
});

describe('the session as an identity for the rest of the chain', () => {
  it('rate limits count per signed-in user, and the audit log names the user', async () => {
    const alice = await signIn('alice');
    const carol = await signIn('carol');
    const json = { headers: { accept: 'application/json' } };
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await alice.request(`${base}/limited/x`, json)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect((await carol.request(`${base}/limited/x`, json)).status).toBe(200); // her own bucket
    expect((await alice.request(`${base}/things`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(200);
    const line = await waitFor(() => gw.stderr().split('\n').find((l) => l.includes('"action":"write"') && l.includes('"path":"/things"')));
    expect(JSON.parse(line)).toMatchObject({ subject: 'alice', method: 'POST', outcome: expect.any(String) });
  });
});

describe('refusals', () => {
  it('answers fetch/XHR calls without a session with 401, a reason and a sign-in hint, never a redirect', async () => {
    const b = new Browser();
    const r = await b.request(`${base}/api/data`, { headers: { accept: 'application/json', 'sec-fetch-mode': 'cors' } });
    expect(r.status).toBe(401);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(JSON.parse(r.body).reason).toBe('oidc_session_missing');
    expect(r.headers.get('www-authenticate')).toBe('OIDC realm="sso", error="oidc_session_missing", login_uri="/oauth2/login"');
    expect(r.location).toBeNull();
    expect(app.received).toHaveLength(0);
  });

  it('refuses a callback whose state does not match the browser\'s sign-in', async () => {
    const b = new Browser();
    const callback = new URL(await loginAtOp(b, `${base}/reports`, op, 'alice'));
    callback.searchParams.set('state', 'A'.repeat(43));
    const r = await b.navigate(callback.href);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).reason).toBe('oidc_state_invalid');
    // another browser (no sign-in state cookie) with the genuine URL is refused too
    const other = new Browser();
    const genuine = await loginAtOp(new Browser(), `${base}/reports`, op, 'alice');
    expect(JSON.parse((await other.navigate(genuine)).body).reason).toBe('oidc_state_invalid');
  });

  it('answers a sign-in the user cancels at the provider with oidc_provider_error', async () => {
    const b = new Browser();
    const first = await b.navigate(`${base}/reports`);
    const atForm = await b.follow(first.location!);
    expect(atForm.url).toMatch(/\/interaction\//);
    const back = await b.follow(`${atForm.url}/abort`, (u) => u.startsWith(base));
    expect(back.url).toMatch(/\/oauth2\/callback\?error=access_denied/);
    const r = await b.navigate(back.url);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'oidc_provider_error', detail: 'the provider answered access_denied' });
    expect([...b.cookies(base).keys()].filter((k) => k.startsWith(COOKIE))).toEqual([]);
  });

  it('refuses a replayed code: the state cookie is spent, and the provider refuses the code itself', async () => {
    const b = new Browser();
    const callback = await loginAtOp(b, `${base}/reports`, op, 'alice');
    const saved = new Map(b.cookies(base));
    expect((await b.navigate(callback)).status).toBe(302);
    const again = await b.navigate(callback);
    expect(again.status).toBe(400); // the sign-in state cookie was spent by the first use
    expect(JSON.parse(again.body).reason).toBe('oidc_state_invalid');
    // with the sign-in state cookie put back (an attacker who kept it), the code is refused by the provider
    const replay = new Browser();
    for (const [k, v] of saved) replay.cookies(base).set(k, v);
    const r = await replay.navigate(callback);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).reason).toBe('oidc_code_invalid');
    expect(op.grants.filter((g) => g === 'authorization_code').length).toBeGreaterThanOrEqual(2);
  });

  it('refuses tampered, expired and foreign session cookies', async () => {
    const b = await signIn();
    const jar = b.cookies(base);
    const name = [...jar.keys()].find((k) => k.startsWith(COOKIE))!;
    const value = jar.get(name)!;
    const api = { headers: { accept: 'application/json' } };
    // tampered: one byte of the ciphertext changed
    const parts = value.split('.');
    parts[3] = (parts[3]![0] === 'A' ? 'B' : 'A') + parts[3]!.slice(1);
    jar.set(name, parts.join('.'));
    let r = await b.request(`${base}/api`, api);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).reason).toBe('oidc_session_invalid');
    // foreign: sealed by another gateway's secret
    const foreign = new SessionCodec(['0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071'], 'sso');
    const now = Date.now();
    const forged = await foreign.seal('session', { sub: 'mallory', claims: { sub: 'mallory', email: 'm@example.com' }, created: now, seen: now, expires: now + 3_600_000, rt: null, idt: null, end: now + 3_600_000 }, now + 3_600_000);
    for (const k of [...jar.keys()]) if (k.startsWith(COOKIE)) jar.delete(k);
    jar.set(COOKIE, forged);
    r = await b.request(`${base}/api`, api);
    expect(JSON.parse(r.body).reason).toBe('oidc_session_invalid');
    // expired: sealed with the right secret, past its absolute end
    const own = new SessionCodec([COOKIE_SECRET], 'sso');
    jar.set(COOKIE, await own.seal('session', { sub: 'alice', claims: { sub: 'alice' }, created: now - 7_200_000, seen: now - 10_000, expires: now + 3_600_000, rt: null, idt: null, end: now - 1000 }, now + 1000));
    r = await b.request(`${base}/api`, api);
    expect(JSON.parse(r.body).reason).toBe('oidc_session_expired');
    // idle too long
    jar.set(COOKIE, await own.seal('session', { sub: 'alice', claims: { sub: 'alice' }, created: now - 7_200_000, seen: now - 3_700_000, expires: now + 3_600_000, rt: null, idt: null, end: now + 3_600_000 }, now + 3_600_000));
    r = await b.request(`${base}/api`, api);
    expect(JSON.parse(r.body).reason).toBe('oidc_session_expired');
    expect(app.received).toHaveLength(0);
    // each refusal cleared the bad cookie; a navigation with one is sent to sign in again, and it is cleared
    expect(jar.has(COOKIE)).toBe(false);
    jar.set(COOKIE, forged);
    const nav = await b.navigate(`${base}/reports`);
    expect(nav.status).toBe(302);
    expect(nav.location!.startsWith(op.issuer)).toBe(true);
    expect(nav.setCookies.some((c) => c.startsWith(`${COOKIE}=;`) && c.includes('Max-Age=0'))).toBe(true);
  });
});

describe('replicas with cookie sessions, and a secret rotation', () => {
  it('a session sealed by one replica opens on another with the same secret among its secrets', async () => {
    const b = await signIn();
    for (const [k, v] of b.cookies(base)) b.cookies(base2).set(k, v);
    const r = await b.request(`${base2}/data`, { headers: { accept: 'application/json' } });
    expect(r.status).toBe(200);
    expect(app.received.at(-1)!.headers['x-user-id']).toBe('alice');
  });

  it('the rotating replica seals with its first (new) secret: a replica with only the old one refuses that', async () => {
    const b = await signIn('alice', '/x', base2);
    expect((await b.request(`${base2}/x`, { headers: { accept: 'application/json' } })).status).toBe(200);
    for (const [k, v] of b.cookies(base2)) b.cookies(base).set(k, v);
    const r = await b.request(`${base}/x`, { headers: { accept: 'application/json' } });
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).reason).toBe('oidc_session_invalid');
  });
});

describe('client authentication with private_key_jwt', () => {
  let gw3: RunningGateway;
  beforeAll(async () => {
    gw3 = await startGateway(`
version: 1
listeners: [{ address: ${base3.slice('http://'.length)} }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${app.url}" } }
auth:
  default: sso
  providers:
    sso:
      oidc:
        issuer: "${op.issuer}"
        client_id: portcullis-pkjwt
        private_key_jwt: { key: "${keyFile}", algorithm: RS256, kid: gw-1 }
        scopes: [openid, groups]
        allowed_groups: [staff]
        cookie_secrets: ["\${env:COOKIE_SECRET}"]
        claims_to_headers: { sub: X-User-Id }
routes:
  - { name: app, match: { path_prefix: / }, upstream: app }
`, { env: { COOKIE_SECRET } });
  }, 30_000);
  afterAll(async () => {
    await gw3?.stop();
  });

  it('signs in with a client assertion signed by the gateway\'s key instead of a secret', async () => {
    const b = await signIn('alice', '/x', base3);
    expect((await b.request(`${base3}/x`, { headers: { accept: 'application/json' } })).status).toBe(200);
    expect(app.received.at(-1)!.headers['x-user-id']).toBe('alice');
  });
});

describe('ID token algorithm pinning', () => {
  let gw4: RunningGateway;
  beforeAll(async () => {
    gw4 = await startGateway(`
version: 1
listeners: [{ address: ${base4.slice('http://'.length)} }]
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
        id_token_algorithm: ES256
        allowed_groups: [staff]
        scopes: [openid, groups]
        cookie_secrets: ["\${env:COOKIE_SECRET}"]
routes:
  - { name: app, match: { path_prefix: / }, upstream: app }
`, { env: { OIDC_CLIENT_SECRET: op.clientSecret, COOKIE_SECRET } });
  }, 30_000);
  afterAll(async () => {
    await gw4?.stop();
  });

  it('refuses an ID token signed with another algorithm than the pinned one, and makes no session', async () => {
    const b = new Browser();
    const callback = await loginAtOp(b, `${base4}/x`, op, 'alice');
    const r = await b.navigate(callback);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).reason).toBe('oidc_id_token_invalid');
    expect([...b.cookies(base4).keys()].filter((k) => k.startsWith(COOKIE))).toEqual([]);
    expect(app.received).toHaveLength(0);
    const line = await waitFor(() => gw4.stderr().split('\n').find((l) => l.includes('did not verify')));
    expect(line).toMatch(/unexpected JWT \\"alg\\" header parameter/);
  });
});

describe('logout', () => {
  it('clears the session and sends the browser to the provider\'s end_session_endpoint', async () => {
    const b = await signIn();
    const r = await b.navigate(`${base}/oauth2/logout`);
    expect(r.status).toBe(302);
    const end = new URL(r.location!);
    expect(end.origin).toBe(op.issuer);
    expect(end.searchParams.get('post_logout_redirect_uri')).toBe(`${base}/bye`);
    expect(end.searchParams.get('id_token_hint')).toMatch(/^eyJ/);
    expect([...b.cookies(base).keys()].filter((k) => k.startsWith(COOKIE))).toEqual([]);
    const after = await b.request(`${base}/api`, { headers: { accept: 'application/json' } });
    expect(JSON.parse(after.body).reason).toBe('oidc_session_missing');
  });
});
