// Security headers: defaults safe for an API, HSTS only over TLS, override-or-keep, removal, CSP.
import { describe, expect, it } from 'vitest';
import { BASE, compile, context, problems, respond, route } from '../helpers/filters.ts';

const policy = compile(`${BASE}
trusted_proxies: [127.0.0.1]
headers:
  default: {}
  strict:
    hsts: { max_age: 2y, include_subdomains: true, preload: true }
    coop: same-origin
    coep: require-corp
    corp: same-site
    csp:
      default-src: ["'self'"]
      connect-src: ["'self'", https://api.example.com]
      frame-ancestors: ["'none'"]
    csp_report_only: "default-src 'none'; report-uri /csp"
    permissions_policy: "camera=(), geolocation=()"
    referrer_policy: strict-origin-when-cross-origin
    remove: [Server, X-Powered-By, X-AspNet-Version]
    keep_upstream: [Content-Security-Policy]
  minimal: { hsts: false, csp: false, coep: false, frame_options: false }
routes:
  - name: plain
    match: { path_prefix: /plain }
    upstream: app
  - name: strict
    match: { path_prefix: /strict }
    upstream: app
    headers: strict
  - name: minimal
    match: { path_prefix: /minimal }
    upstream: app
    headers: minimal
  - name: off
    match: { path_prefix: /off }
    upstream: app
    headers: none
`);

const UPSTREAM = { server: 'nginx/1.0', 'x-powered-by': 'Express', 'x-frame-options': 'ALLOWALL', 'content-type': 'application/json' };

describe('security headers', () => {
  it('applies the default policy (safe for an API) to routes that name none', () => {
    const head = respond(route(policy, 'plain'), context('GET'), 200, UPSTREAM);
    expect(head.headers).toEqual({
      'content-type': 'application/json',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    });
  });

  it('sends HSTS only over TLS, a trusted proxy\'s TLS included', () => {
    expect(respond(route(policy, 'plain'), context('GET'), 200).headers['strict-transport-security']).toBeUndefined();
    expect(respond(route(policy, 'plain'), context('GET', {}, { scheme: 'https' }), 200).headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(respond(route(policy, 'strict'), context('GET', {}, { scheme: 'https' }), 200).headers['strict-transport-security']).toBe('max-age=63072000; includeSubDomains; preload');
    // an upstream's HSTS on plain HTTP does not leak through
    expect(respond(route(policy, 'plain'), context('GET'), 200, { 'strict-transport-security': 'max-age=1' }).headers['strict-transport-security']).toBeUndefined();
  });

  it('builds CSP from directives, keeps the upstream CSP when told, and removes listed headers', () => {
    const strict = route(policy, 'strict');
    const head = respond(strict, context('GET'), 200, { ...UPSTREAM, 'x-aspnet-version': '4' });
    expect(head.headers['content-security-policy']).toBe("default-src 'self'; connect-src 'self' https://api.example.com; frame-ancestors 'none'");
    expect(head.headers['content-security-policy-report-only']).toBe("default-src 'none'; report-uri /csp");
    expect(head.headers['permissions-policy']).toBe('camera=(), geolocation=()');
    expect(head.headers['cross-origin-resource-policy']).toBe('same-site');
    expect(head.headers['x-frame-options']).toBe('DENY'); // overridden
    expect(head.headers.server).toBeUndefined();
    expect(head.headers['x-aspnet-version']).toBeUndefined();
    const kept = respond(strict, context('GET'), 200, { 'content-security-policy': "default-src 'self' https://cdn.example.com" });
    expect(kept.headers['content-security-policy']).toBe("default-src 'self' https://cdn.example.com");
  });

  it('leaves out what is set to false, and does nothing on headers: none', () => {
    const head = respond(route(policy, 'minimal'), context('GET', {}, { scheme: 'https' }), 200, UPSTREAM);
    expect(head.headers['strict-transport-security']).toBeUndefined();
    expect(head.headers['content-security-policy']).toBeUndefined();
    expect(head.headers['cross-origin-embedder-policy']).toBeUndefined();
    expect(head.headers['x-frame-options']).toBe('ALLOWALL');
    expect(route(policy, 'off').filters.map((f) => f.name)).not.toContain('security_headers');
  });

  it('reports policy errors with positions', () => {
    const route1 = (h: string) => problems(`${BASE}routes:\n  - match: { path_prefix: / }\n    upstream: app\n    headers: ${h}\n`);
    expect(route1('{ coop: same-orign }')[0]).toMatch(/policy\.yaml:9:\d+: expected one of .*did you mean "same-origin"/);
    expect(route1('{ hsts: { max_age: 1d, preload: true } }')[0]).toMatch(/HSTS preload needs include_subdomains and a max_age of at least 1y/);
    expect(route1('{ csp: { connect-src: ["a; script-src *"] } }')[0]).toMatch(/not a valid CSP source/);
    expect(route1('strictt')[0]).toMatch(/unknown headers policy "strictt"/);
    expect(route1('{ keep_upstream: [Content-Security-Policy, X-Custom] }')[0]).toMatch(/policy\.yaml:9:\d+: "X-Custom" is not a header this policy sets/);
  });
});
