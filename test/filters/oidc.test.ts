// The OIDC provider's policy: its schema rules, the production checklist (http redirect URI or issuer, weak
// cookie secrets, no allowed-user rule), and the pieces that decide redirects (same-origin return paths,
// navigation vs fetch).
import { describe, expect, it } from 'vitest';
import { isNavigation, safeReturnPath } from '../../src/filters/oidc.ts';
import { BASE, context, problems } from '../helpers/filters.ts';

const SECRET = 'c8e2a6f0b4d9e3a7c1f5b8d2e6a0c4f9b3d7e1a5c9f2b6d0';

function policy(oidc: string, mode = 'development'): string {
  return `${BASE}mode: ${mode}
trusted_proxies: [10.0.0.0/8]
auth:
  default: sso
  providers:
    sso:
      oidc:
${oidc.trim().split('\n').map((l) => '        ' + l.trim()).join('\n')}
routes:
  - { name: app, match: { path_prefix: / }, upstream: app }
`;
}

const good = `
issuer: https://idp.example.com
client_id: app
client_secret: s3cr3t
public_url: https://app.example.com
allowed_email_domains: [example.com]
cookie_secrets: ["${SECRET}"]
`;

describe('oidc provider policy', () => {
  it('compiles a complete provider, in production too', () => {
    expect(problems(policy(good))).toEqual([]);
    expect(problems(policy(good, 'production')).filter((p) => /oidc|cookie|issuer|public_url|allowed/.test(p))).toEqual([]);
  });

  it('refuses an http redirect URI, an http issuer, a weak cookie secret and no allowed-user rule in production', () => {
    const weak = `
issuer: http://idp.example.com
client_id: app
client_secret: s3cr3t
public_url: http://app.example.com
cookie_secrets: [too-short]
`;
    const out = problems(policy(weak, 'production')).join('\n');
    expect(out).toMatch(/production: the OpenID Provider must be reached over https/);
    expect(out).toMatch(/production: the redirect URI would be plain http; public_url must be https/);
    expect(out).toMatch(/production: cookie secret has 72 bits, at least 256 are required/);
    expect(out).toMatch(/production: every account of the provider could sign in; set allowed_email_domains or allowed_groups/);
    // development starts with the same policy
    expect(problems(policy(weak))).toEqual([]);
  });

  it('requires a fixed public_url in production (the redirect URI never comes from the Host header)', () => {
    const out = problems(policy(good.replace('public_url: https://app.example.com', ''), 'production')).join('\n');
    expect(out).toMatch(/production: set public_url/);
  });

  it('refuses contradictory settings', () => {
    expect(problems(policy(`${good}\nprivate_key_jwt: { key: "-----BEGIN PRIVATE KEY-----" }`)).join('\n')).toMatch(/give one of "client_secret", "private_key_jwt"/);
    expect(problems(policy(`${good}\nsession_store: redis`)).join('\n')).toMatch(/session_store: redis needs a Redis URL/);
    expect(problems(policy(`${good}\nlogin_path: /oauth2/callback`)).join('\n')).toMatch(/must differ/);
    expect(problems(policy(good.replace('https://app.example.com', 'https://app.example.com/base'))).join('\n')).toMatch(/public_url is an origin/);
    expect(problems(policy(good.replace(/cookie_secrets.*/, ''))).join('\n')).toMatch(/cookie_secrets/);
    expect(problems(policy(`${good}\nauth_params: { state: fixed, prompt: login }`)).join('\n')).toMatch(/"state" is set by the gateway/);
    expect(problems(policy(`${good}\nauth_params: { prompt: login }`))).toEqual([]);
  });

  it('takes only one of jwt, forward, oidc per provider', () => {
    const both = policy(`${good}`).replace('      oidc:', '      jwt: { algorithms: [HS256], keys: [{ secret: "' + SECRET + '" }] }\n      oidc:');
    expect(problems(both).join('\n')).toMatch(/give exactly one of "jwt", "forward", "oidc"/);
  });
});

describe('return paths and navigations', () => {
  it('keeps same-origin paths and refuses everything that names another host', () => {
    expect(safeReturnPath('/reports?year=2024')).toBe('/reports?year=2024');
    expect(safeReturnPath('/a/../b')).toBe('/b');
    for (const bad of ['https://evil.test/', '//evil.test/x', '/\\evil.test', '\\\\evil.test', 'javascript:alert(1)', 'reports', '/x\ny', '', null]) {
      expect(safeReturnPath(bad)).toBeNull();
    }
  });

  it('tells navigations from fetch/XHR calls', () => {
    expect(isNavigation(context('GET', { 'sec-fetch-mode': 'navigate' }))).toBe(true);
    expect(isNavigation(context('GET', { 'sec-fetch-mode': 'cors', accept: 'text/html' }))).toBe(false);
    expect(isNavigation(context('GET', { accept: 'text/html,application/xhtml+xml' }))).toBe(true); // no fetch metadata (older browsers)
    expect(isNavigation(context('GET', { accept: 'application/json' }))).toBe(false);
    expect(isNavigation(context('POST', { 'sec-fetch-mode': 'navigate' }))).toBe(false); // a form post is not replayed after sign-in
  });
});
