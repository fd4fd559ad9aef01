// CORS: origin matching tables, preflight answers, headers on actual requests, policy errors.
import { describe, expect, it } from 'vitest';
import { BASE, compile, context, problems, respond, route, verdict } from '../helpers/filters.ts';

const POLICY = `${BASE}
cors:
  web:
    origins: [https://app.example.com, "https://*.example.org", "http://localhost:5173"]
    credentials: true
    methods: [GET, POST, PUT]
    allow_headers: [Content-Type, X-CSRF-Token]
    expose_headers: [X-Request-ID]
    max_age: 10m
  public: { origins: "*" }
  sandboxed: { origins: [null, https://app.example.com] }
  fromenv: { origins: ["\${env:FRONTEND_ORIGIN}"] }
routes:
  - name: web
    match: { path_prefix: /web }
    upstream: app
    cors: web
  - name: public
    match: { path_prefix: /public }
    upstream: app
    cors: public
  - name: sandboxed
    match: { path_prefix: /sandboxed }
    upstream: app
    cors: sandboxed
  - name: fromenv
    match: { path_prefix: /env }
    upstream: app
    cors: fromenv
  - name: inline
    match: { path_prefix: /inline }
    upstream: app
    cors: { origins: [https://inline.example.com] }
  - name: off
    match: { path_prefix: /off }
    upstream: app
    cors: none
`;
const policy = compile(POLICY, { FRONTEND_ORIGIN: 'https://a.example.com, https://b.example.com' });

describe('cors origin matching', () => {
  const web = route(policy, 'web');
  const table: [string, boolean][] = [
    ['https://app.example.com', true],
    ['https://APP.example.com', true],
    ['https://app.example.com:443', false], // browsers never send the default port
    ['http://app.example.com', false],
    ['https://app.example.com.evil.net', false],
    ['https://evilapp.example.com', false],
    ['https://app.example.com/', false],
    ['https://app.example.com, https://evil.com', false], // two Origin headers, joined
    ['https://a.example.org', true],
    ['https://a.b.example.org', true],
    ['https://example.org', false],
    ['https://example.org.evil.net', false],
    ['https://evil-example.org', false],
    ['https://a.example.org.evil.net', false],
    ['https://a.example.org:8443', false],
    ['https://a_b.example.org', false],
    ['http://a.example.org', false],
    ['http://localhost:5173', true],
    ['http://localhost:5174', false],
    ['null', false],
    ['', false],
  ];
  it.each(table)('%s → %s', (origin, allowed) => {
    const ctx = context('GET', { origin });
    expect(verdict(web, ctx)).toBeUndefined();
    const head = respond(web, ctx, 200, { 'access-control-allow-origin': '*' });
    if (allowed) {
      expect(head.headers['access-control-allow-origin']).toBe(origin);
      expect(head.headers['access-control-allow-credentials']).toBe('true');
      expect(head.headers['access-control-expose-headers']).toBe('X-Request-ID');
    } else {
      // no Access-Control-* at all; the upstream's own one is removed
      expect(Object.keys(head.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    }
    expect(head.headers.vary).toBe('Origin');
  });

  it('allows null only when listed', () => {
    const ctx = context('GET', { origin: 'null' });
    verdict(route(policy, 'sandboxed'), ctx);
    expect(respond(route(policy, 'sandboxed'), ctx, 200).headers['access-control-allow-origin']).toBe('null');
  });

  it('reads comma lists from the environment', () => {
    for (const [origin, ok] of [['https://a.example.com', true], ['https://b.example.com', true], ['https://c.example.com', false]] as const) {
      const ctx = context('GET', { origin });
      verdict(route(policy, 'fromenv'), ctx);
      expect(respond(route(policy, 'fromenv'), ctx, 200).headers['access-control-allow-origin']).toBe(ok ? origin : undefined);
    }
  });

  it('answers * without Vary for a public policy without credentials', () => {
    const ctx = context('GET', { origin: 'https://anyone.net' });
    verdict(route(policy, 'public'), ctx);
    const head = respond(route(policy, 'public'), ctx, 200);
    expect(head.headers['access-control-allow-origin']).toBe('*');
    expect(head.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('merges Vary with the upstream value', () => {
    const ctx = context('GET', { origin: 'https://app.example.com' });
    verdict(route(policy, 'web'), ctx);
    expect(respond(route(policy, 'web'), ctx, 200, { vary: 'Accept-Encoding' }).headers.vary).toBe('Accept-Encoding, Origin');
    expect(respond(route(policy, 'web'), ctx, 200, { vary: 'origin' }).headers.vary).toBe('origin');
  });

  it('leaves requests without Origin alone, and routes with cors: none', () => {
    const ctx = context('GET');
    expect(verdict(route(policy, 'web'), ctx)).toBeUndefined();
    expect(respond(route(policy, 'web'), ctx, 200).headers['access-control-allow-origin']).toBeUndefined();
    expect(route(policy, 'off').filters.map((f) => f.name)).not.toContain('cors');
    expect(route(policy, 'inline').filters.map((f) => f.name)).toContain('cors');
  });
});

describe('cors preflight', () => {
  const web = route(policy, 'web');
  const preflight = (origin: string, method: string, headers?: string) =>
    context('OPTIONS', { origin, 'access-control-request-method': method, ...(headers ? { 'access-control-request-headers': headers } : {}) });

  it('answers an allowed preflight itself with 204 and the policy', () => {
    const ctx = preflight('https://app.example.com', 'PUT', 'content-type, x-csrf-token');
    const d = verdict(web, ctx);
    expect(d).toMatchObject({ status: 204, reason: 'preflight' });
    const head = respond(web, ctx, 204, d!.headers);
    expect(ctx.deny).toBeNull(); // answered, but not recorded as a refusal
    expect(head.headers).toMatchObject({
      'access-control-allow-origin': 'https://app.example.com',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'GET, POST, PUT',
      'access-control-allow-headers': 'Content-Type, X-CSRF-Token',
      'access-control-max-age': '600',
      vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    });
  });

  const refusals: [string, string, string | undefined, string][] = [
    ['https://app.example.com.evil.net', 'GET', undefined, 'origin_not_allowed'],
    ['null', 'POST', undefined, 'origin_not_allowed'],
    ['https://app.example.com', 'DELETE', undefined, 'cors_method_not_allowed'],
    ['https://app.example.com', 'put', undefined, 'cors_method_not_allowed'],
    ['https://app.example.com', 'POST', 'content-type, x-admin', 'cors_headers_not_allowed'],
  ];
  it.each(refusals)('%s %s %s → 403 %s', (origin, method, headers, reason) => {
    const ctx = preflight(origin, method, headers);
    const d = verdict(web, ctx);
    expect(d).toMatchObject({ status: 403, reason });
    const head = respond(web, ctx, 403, d!.headers);
    expect(Object.keys(head.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    expect(head.headers.vary).toContain('Origin');
  });

  it('refuses a WebSocket handshake from a disallowed origin (browsers apply no CORS to it)', () => {
    const up = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': '13' };
    expect(verdict(web, context('GET', { ...up, origin: 'https://evil.net' }))).toMatchObject({ status: 403, reason: 'origin_not_allowed' });
    expect(verdict(web, context('GET', { ...up, origin: 'https://app.example.com' }))).toBeUndefined();
    expect(verdict(web, context('GET', up))).toBeUndefined(); // not a browser
  });

  it('treats OPTIONS without Access-Control-Request-Method as an ordinary request', () => {
    expect(verdict(web, context('OPTIONS', { origin: 'https://app.example.com' }))).toBeUndefined();
  });
});

describe('cors policy errors', () => {
  const one = (cors: string, extra = '', mode = 'development') =>
    problems(`${BASE}mode: ${mode}\n${extra}routes:\n  - match: { path_prefix: / }\n    upstream: app\n    cors: ${cors}\n`);

  it('refuses * with credentials', () => {
    expect(one('{ origins: "*", credentials: true }')).toEqual([expect.stringMatching(/policy\.yaml:\d+:\d+: a CORS policy cannot allow every origin \("\*"\) with credentials/)]);
  });
  it('refuses malformed origins and misplaced wildcards', () => {
    expect(one('{ origins: [https://app.example.com/path] }')[0]).toMatch(/invalid origin/);
    expect(one('{ origins: ["https://app.*.com"] }')[0]).toMatch(/invalid origin/);
    expect(one('{ origins: ["https://*.com"] }')[0]).toMatch(/too broad/);
    expect(one('{ origins: [app.example.com] }')[0]).toMatch(/invalid origin/);
  });
  it('names an unknown policy', () => {
    expect(one('webb', 'cors:\n  web: { origins: [https://a.example.com] }\n')[0]).toMatch(/unknown CORS policy "webb" \(defined: web\)/);
  });
  it('in production refuses * and development origins, wherever they come from', () => {
    const out = one('{ origins: ["*", "http://localhost:3000", "https://ok.example.com", "http://127.0.0.1:5173"] }', 'trusted_proxies: [10.0.0.0/8]\n', 'production');
    expect(out.join('\n')).toMatch(/production: a CORS policy must not allow every origin/);
    expect(out.join('\n')).toMatch(/development origin "http:\/\/localhost:3000"/);
    expect(out.join('\n')).toMatch(/development origin "http:\/\/127.0.0.1:5173"/);
    expect(out.join('\n')).not.toMatch(/ok\.example\.com/);
  });
  it('takes a method-limited route without OPTIONS (preflights are routed by the method they ask for)', () => {
    const out = problems(`${BASE}routes:\n  - match: { path_prefix: /, methods: [GET, POST] }\n    upstream: app\n    cors: { origins: [https://a.example.com] }\n`);
    expect(out).toEqual([]);
  });
});
