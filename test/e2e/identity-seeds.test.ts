// The identity promises of the seed apps (../shared/seeds), each proven through the real gateway process:
// 000 one shared JWT_SECRET accepted by every replica, deny by default; 001 7-day tokens refused with their
// own reason; 002 JWT_HEADER_NAME / JWT_HEADER_TYPE / JWT_TOKEN_LOCATION as token sources; 003 admin routes
// always need a valid token with the right role. (004 is test/e2e/forward-auth.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { SECRET, hs256, now } from '../helpers/identity.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let replicas: RunningGateway[] = [];

const policy = () => `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: { provider: app }
  providers:
    app:
      jwt:
        algorithms: [HS256]                      # 000/001: HS256, pinned
        keys: [{ secret: "\${env:JWT_SECRET}" }]  # 000: one 256-bit secret shared by every instance
        max_token_lifetime: 1h                   # 001: JWT_ACCESS_TOKEN_EXPIRES 3600; 7-day tokens refused
        token_from:                              # 002: JWT_TOKEN_LOCATION headers, cookies; JWT_HEADER_NAME/TYPE
          - { header: X-Auth, scheme: JWT }
          - { cookie: access_token_cookie }
        claims_to_headers: { sub: X-User-Id }
routes:
  - { name: health, match: { path: /health }, upstream: app, auth: none }
  - { name: admin, match: { path_prefix: /api/admin }, upstream: app, authorize: { roles_any: [admin] } }  # 003
  - { name: api, match: { path_prefix: /api }, upstream: app }    # no auth key: the default applies (deny by default)
`;

beforeAll(async () => {
  upstream = await startUpstream();
  replicas = await Promise.all([startGateway(policy(), { env: { JWT_SECRET: SECRET } }), startGateway(policy(), { env: { JWT_SECRET: SECRET } })]);
});

afterAll(async () => {
  await Promise.all(replicas.map((g) => g.stop()));
  await upstream?.close();
});

async function call(g: RunningGateway, path: string, headers: Record<string, string> = {}) {
  const r = await fetch(g.url + path, { headers });
  const body = await r.text();
  return { status: r.status, reason: r.status >= 400 ? (JSON.parse(body) as { reason: string }).reason : undefined, challenge: r.headers.get('www-authenticate') };
}

describe('seed 000: shared JWT_SECRET, deny by default', () => {
  it('every replica accepts the same token', async () => {
    const t = await hs256({ sub: 'alice' });
    for (const g of replicas) expect((await call(g, '/api/uploads', { 'x-auth': `JWT ${t}` })).status).toBe(200);
  });

  it('a route without an auth key needs a token; only `auth: none` is open', async () => {
    upstream.received.length = 0;
    expect((await call(replicas[0]!, '/api/uploads')).status).toBe(401);
    expect(upstream.received).toHaveLength(0);
    expect((await call(replicas[0]!, '/health')).status).toBe(200);
  });
});

describe('seed 001: short tokens', () => {
  it('refuses a 7-day token with token_lifetime_too_long and a challenge the UI can act on', async () => {
    const t = await hs256({ sub: 'alice', iat: now(), exp: now() + 7 * 86400 });
    const r = await call(replicas[0]!, '/api/me', { 'x-auth': `JWT ${t}` });
    expect(r).toMatchObject({ status: 401, reason: 'token_lifetime_too_long' });
    expect(r.challenge).toContain('error="invalid_token"');
  });
});

describe('seed 002: token location, header name and type', () => {
  it('reads the configured header with its type, then the cookie; Authorization: Bearer is not a source here', async () => {
    const t = await hs256({ sub: 'alice' });
    expect((await call(replicas[1]!, '/api/me', { 'x-auth': `JWT ${t}` })).status).toBe(200);
    expect((await call(replicas[1]!, '/api/me', { cookie: `access_token_cookie=${t}` })).status).toBe(200);
    expect((await call(replicas[1]!, '/api/me', { authorization: `Bearer ${t}` })).reason).toBe('token_missing');
    expect((await call(replicas[1]!, '/api/me', { 'x-auth': `Bearer ${t}` })).reason).toBe('token_missing');
  });
});

describe('seed 003: admin routes need a valid token with the admin role', () => {
  it('no token 401, wrong role 403 role_missing, admin 200', async () => {
    const g = replicas[0]!;
    upstream.received.length = 0;
    expect((await call(g, '/api/admin/refs')).reason).toBe('token_missing');
    expect((await call(g, '/api/admin/refs', { 'x-auth': `JWT ${await hs256({ sub: 's', roles: ['support'] })}` })).reason).toBe('role_missing');
    expect(upstream.received).toHaveLength(0);
    expect((await call(g, '/api/admin/refs', { 'x-auth': `JWT ${await hs256({ sub: 'a', roles: ['admin'] })}` })).status).toBe(200);
    expect(upstream.received[0]!.headers['x-user-id']).toBe('a');
  });
});
