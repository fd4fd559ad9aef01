// Authorization rules per route: roles, scopes, claims and method rules, each refusal a 403 with its reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyError } from '../../src/config/errors.ts';
import { SECRET, bearer, compile, hs256, type Compiled } from '../helpers/identity.ts';

const POLICY = `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: { provider: main }
  providers:
    main:
      jwt: { algorithms: [HS256], keys: [{ secret: "${SECRET}" }] }
    keycloak:
      jwt: { algorithms: [HS256], keys: [{ secret: "${SECRET}" }], roles_claim: realm_access.roles, scopes_claim: scp }
routes:
  - { name: any, match: { path_prefix: /any }, upstream: app, authorize: { roles_any: [admin, support_lead] } }
  - { name: all, match: { path_prefix: /all }, upstream: app, authorize: { roles_all: [support, support_lead] } }
  - { name: scopes, match: { path_prefix: /scopes }, upstream: app, authorize: { scopes_any: [read, write], scopes_all: [tickets] } }
  - { name: claims, match: { path_prefix: /claims }, upstream: app, authorize: { claims: { tenant: acme, tier: [gold, silver], org.id: "42" } } }
  - name: crud
    match: { path_prefix: /items }
    upstream: app
    authorize: { methods: { user: [GET, HEAD], admin: ["*"] } }
  - { name: kc, match: { path_prefix: /kc }, upstream: app, auth: keycloak, authorize: { roles_any: [admin], scopes_any: [api] } }
  - { name: report, match: { path_prefix: /report }, upstream: app, authorize: { roles_any: [admin], mode: report } }
`;

let c: Compiled;
beforeAll(async () => {
  c = await compile(POLICY);
});
afterAll(async () => {
  await c.close();
});

async function outcome(path: string, claims: Record<string, unknown>, method = 'GET') {
  const out = await c.run({ path, method, headers: bearer(await hs256({ sub: 'u', ...claims })) });
  return out.reason === null ? 'allowed' : `${out.status} ${out.reason}`;
}

describe('authorize', () => {
  it('roles_any and roles_all', async () => {
    expect(await outcome('/any', { roles: ['support_lead'] })).toBe('allowed');
    expect(await outcome('/any', { roles: ['user'] })).toBe('403 role_missing');
    expect(await outcome('/any', {})).toBe('403 role_missing');
    expect(await outcome('/all', { roles: ['support', 'support_lead'] })).toBe('allowed');
    expect(await outcome('/all', { roles: ['support'] })).toBe('403 role_missing');
  });

  it('scopes from a space-separated scope claim', async () => {
    expect(await outcome('/scopes', { scope: 'read tickets' })).toBe('allowed');
    expect(await outcome('/scopes', { scope: 'read' })).toBe('403 scope_missing');
    expect(await outcome('/scopes', { scope: 'tickets' })).toBe('403 scope_missing');
    expect(await outcome('/scopes', { scope: ['write', 'tickets'] })).toBe('allowed');
  });

  it('claim equals and in, with dotted paths', async () => {
    expect(await outcome('/claims', { tenant: 'acme', tier: 'gold', org: { id: 42 } })).toBe('allowed');
    expect(await outcome('/claims', { tenant: 'other', tier: 'gold', org: { id: 42 } })).toBe('403 claim_mismatch');
    expect(await outcome('/claims', { tenant: 'acme', tier: 'bronze', org: { id: 42 } })).toBe('403 claim_mismatch');
    expect(await outcome('/claims', { tenant: 'acme', tier: 'gold' })).toBe('403 claim_mismatch');
  });

  it('method rules: user reads only, admin everything', async () => {
    expect(await outcome('/items/1', { roles: ['user'] }, 'GET')).toBe('allowed');
    expect(await outcome('/items/1', { roles: ['user'] }, 'HEAD')).toBe('allowed');
    expect(await outcome('/items/1', { roles: ['user'] }, 'DELETE')).toBe('403 method_not_allowed_for_role');
    expect(await outcome('/items/1', { roles: ['user', 'admin'] }, 'DELETE')).toBe('allowed');
    expect(await outcome('/items/1', { roles: ['guest'] }, 'GET')).toBe('403 role_missing');
  });

  it('reads roles from a configured claim path', async () => {
    expect(await outcome('/kc', { realm_access: { roles: ['admin'] }, scp: 'api' })).toBe('allowed');
    expect(await outcome('/kc', { roles: ['admin'], scp: 'api' })).toBe('403 role_missing');
  });

  it('answers 403 with an insufficient_scope challenge naming the reason', async () => {
    const out = await c.run({ path: '/any', headers: bearer(await hs256({ sub: 'u', roles: ['user'] })) });
    expect(out.status).toBe(403);
    expect(out.filter).toBe('authorize');
    expect(out.headers['www-authenticate']).toBe('Bearer realm="main", error="insufficient_scope", error_description="role_missing"');
  });

  it('unauthenticated requests are refused by auth first', async () => {
    const out = await c.run('/any');
    expect([out.status, out.reason, out.filter]).toEqual([401, 'token_missing', 'jwt']);
  });

  it('report mode lets the request through and counts what it would deny', async () => {
    expect(await outcome('/report', { roles: ['user'] })).toBe('allowed');
    expect(await c.counter('portcullis_authorize_reported_total', { route: 'report', reason: 'role_missing' })).toBe(1);
  });
});

describe('authorize and auth: policy errors', () => {
  const base = (routes: string, extra = '') => `
version: 1
${extra}
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: none
  providers:
    main: { jwt: { algorithms: [HS256], keys: [{ secret: "${SECRET}" }] } }
routes:
${routes}
`;
  async function problems(text: string): Promise<string[]> {
    try {
      const c2 = await compile(text);
      await c2.close();
      return [];
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      return err.problems.map((p) => `${p.line}: ${p.message}`);
    }
  }

  it('refuses authorize on a route without authentication', async () => {
    const p = await problems(base('  - { match: { path: /a }, upstream: app, auth: none, authorize: { roles_any: [admin] } }'));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^11: authorize needs an authenticated route/);
  });

  it('refuses an unknown provider with its position', async () => {
    const p = await problems(base('  - { match: { path: /a }, upstream: app, auth: mian }'));
    expect(p[0]).toMatch(/^11: unknown provider "mian"/);
  });

  it('production: refuses routes that are not authenticated and not explicitly auth: none', async () => {
    const p = await problems(base('  - { match: { path: /a }, upstream: app }\n  - { match: { path: /b }, upstream: app, auth: none }', 'mode: production\ntrusted_proxies: [10.0.0.0/8]'));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^12: production: this route is not authenticated/);
  });

  it('production: refuses short HMAC secrets and require_exp: false', async () => {
    const text = `
version: 1
mode: production
trusted_proxies: [10.0.0.0/8]
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: main
  providers:
    main: { jwt: { algorithms: [HS256], keys: [{ secret: "short-secret" }], require_exp: false } }
routes:
  - { match: { path: /a }, upstream: app }
`;
    const p = await problems(text);
    expect(p.some((m) => /^10: production: HMAC secret has 96 bits/.test(m))).toBe(true);
    expect(p.some((m) => /^10: production: tokens without exp/.test(m))).toBe(true);
  });

  it('development: with `default: none` a silent route is open', async () => {
    expect(await problems(base('  - { match: { path: /a }, upstream: app }'))).toEqual([]);
  });

  it('providers without a default: every route must say how it is authenticated', async () => {
    const p = await problems(base('  - { match: { path: /a }, upstream: app }\n  - { match: { path: /b }, upstream: app, auth: main }').replace('  default: none\n', ''));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^10: route does not say how it is authenticated/);
  });

  it('refuses a provider with neither keys nor jwks_url, and HS algorithms on a public key', async () => {
    const p = await problems(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  providers:
    a: { jwt: { algorithms: [HS256] } }
routes:
  - { match: { path: /a }, upstream: app, auth: none }
`);
    expect(p[0]).toMatch(/give "keys", "jwks_url" or "jwks_file"/);
  });
});

describe('authorize on forward-auth routes', () => {
  it('refuses role rules when the provider cannot carry roles', async () => {
    try {
      await compile(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: ext
  providers:
    ext: { forward: { url: http://127.0.0.1:9/check } }
routes:
  - { match: { path: /a }, upstream: app, authorize: { roles_any: [admin] } }
`);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PolicyError);
      expect((err as PolicyError).problems[0]!.message).toMatch(/gives no roles/);
    }
  });
});
