// Attacks through request headers and methods, and the headers of the gateway's own answers: duplicate
// Host, dangerous methods and method overrides, spoofable identity/routing headers, bodies answered before
// they were read, cookies with look-alike names, list claims that split into more roles. Each test asserts
// what the client got and what the upstream received (for a refusal: nothing).
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { hs256, now, SECRET } from '../helpers/identity.ts';
import { rawRequest, reasonOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
limits:
  max_body_size: 1KiB
  header_timeout: 1s
upstreams:
  app: { url: "${upstream.url}" }
auth:
  providers:
    main:
      jwt:
        keys: [{ secret: "${SECRET}", algorithm: HS256 }]
        algorithms: [HS256]
        token_from: [{ header: Authorization, scheme: Bearer }, { cookie: access_token }]
        claims_to_headers: { sub: X-User-Id, roles: X-User-Roles }
csrf:
  cookie: { double_submit_cookie: __Host-csrf, check_origin: false }
routes:
  - name: read
    match: { path_prefix: /read, methods: [GET, HEAD] }
    upstream: app
    auth: none
  - name: anything
    match: { path_prefix: /any }
    upstream: app
    auth: none
  - name: traced
    match: { path_prefix: /trace, methods: [GET, TRACE] }
    upstream: app
    auth: none
  - name: override
    match: { path_prefix: /override, methods: [GET, POST, PATCH] }
    upstream: app
    auth: none
    hardening: { method_override: allow }
  - name: legacy
    match: { path_prefix: /legacy }
    upstream: app
    auth: none
    hardening: { underscore_headers: allow, keep_headers: [X-Original-URL] }
  - name: me
    match: { path_prefix: /me }
    upstream: app
    auth: main
  - name: form
    match: { path: /form, methods: [POST] }
    upstream: app
    auth: none
    csrf: cookie
`);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
});

const raw = (text: string, ms?: number) => rawRequest(gw.url, text, ms);
const lower = (s: string) => s.toLowerCase();

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(gw.url + path, { method, headers }, (res) => {
      let data = '';
      res.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('Host', () => {
  it('refuses two Host fields (400 duplicate_host) and closes', async () => {
    const reply = await raw('GET /any/x HTTP/1.1\r\nHost: a.test\r\nHost: admin.test\r\n\r\n');
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe('duplicate_host');
    expect(lower(reply)).toContain('connection: close');
    expect(upstream.received).toHaveLength(0);
  });
});

describe('dangerous methods and method overrides', () => {
  it('answers TRACE with 405 on a route that takes any method', async () => {
    const reply = await raw('TRACE /any/x HTTP/1.1\r\nHost: x\r\nCookie: session=secret\r\nConnection: close\r\n\r\n');
    expect(statusOf(reply)).toBe(405);
    expect(reasonOf(reply)).toBe('method_not_allowed');
    expect(lower(reply)).toMatch(/\r\nallow: /);
    expect(upstream.received).toHaveLength(0);
  });

  it('TRACK never reaches a route: the HTTP parser refuses the method (400 invalid_method)', async () => {
    const reply = await raw('TRACK /any/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe('invalid_method');
    expect(upstream.received).toHaveLength(0);
  });

  it('forwards TRACE where a route lists it', async () => {
    expect(statusOf(await raw('TRACE /trace/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))).toBe(200);
    expect(upstream.received.map((r) => r.method)).toEqual(['TRACE']);
  });

  it.each([
    ['X-HTTP-Method-Override: DELETE'],
    ['X-HTTP-Method: DELETE'],
    ['X-Method-Override: PUT'],
    ['x-http-method-override: delete'],
  ])('refuses %s on a read-only route (400 method_override)', async (header) => {
    const reply = await raw(`GET /read/x HTTP/1.1\r\nHost: x\r\n${header}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe('method_override');
    expect(upstream.received).toHaveLength(0);
  });

  it.each(['/read/x?_method=DELETE', '/read/x?a=1&_method=delete', '/read/x?_method=PUT&_method=GET'])('refuses %s on a read-only route', async (path) => {
    const reply = await raw(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe('method_override');
    expect(upstream.received).toHaveLength(0);
  });

  it('removes override headers on a route that takes any method', async () => {
    expect((await get('/any/x', { 'x-http-method-override': 'DELETE', 'x-method-override': 'PUT' })).status).toBe(200);
    expect(upstream.received[0]!.headers['x-http-method-override']).toBeUndefined();
    expect(upstream.received[0]!.headers['x-method-override']).toBeUndefined();
  });

  it('with method_override: allow, forwards an override to a listed method and refuses another (405)', async () => {
    expect((await get('/override/x', { 'x-http-method-override': 'PATCH' }, 'POST')).status).toBe(200);
    expect(upstream.received[0]!.headers['x-http-method-override']).toBe('PATCH');
    const refused = await get('/override/x', { 'x-http-method-override': 'DELETE' }, 'POST');
    expect(refused.status).toBe(405);
    expect(refused.headers.allow).toBe('GET, POST, PATCH');
    expect(upstream.received).toHaveLength(1);
  });
});

describe('spoofable request headers', () => {
  const spoofed: Record<string, string> = {
    'X_User_Id': 'admin',
    'X_User_Roles': 'admin',
    'X-Original-URL': '/admin',
    'X-Rewrite-URL': '/admin',
    'X-HTTP-Method-Override': 'DELETE',
    'True-Client-IP': '10.0.0.1',
    'X-Client-IP': '10.0.0.1',
    'CF-Connecting-IP': '10.0.0.1',
    'X-Forwarded-Prefix': '/admin',
    'X-Forwarded-Server': 'internal',
    'X-Envoy-Original-Path': '/admin',
    'X-Envoy-Internal': 'true',
    'X-Middleware-Subrequest': 'middleware',
    'X-Real-IP': '10.0.0.1',
  };

  it('never forwards them from an untrusted peer', async () => {
    const lines = Object.entries(spoofed).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    expect(statusOf(await raw(`GET /any/x HTTP/1.1\r\nHost: x\r\n${lines}Connection: close\r\n\r\n`))).toBe(200);
    const got = upstream.received[0]!;
    for (const name of Object.keys(spoofed)) expect(got.headers[name.toLowerCase()], name).toBeUndefined();
    expect(got.rawHeaders.filter((_v, i) => i % 2 === 0).map(lower).filter((n) => n.includes('_'))).toEqual([]);
    expect(got.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('an underscore spelling cannot pass for the identity header the gateway sets', async () => {
    const token = await hs256({ sub: 'alice', roles: ['user'], exp: now() + 60 });
    const reply = await raw(`GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX_User_Id: admin\r\nX-User-Id: admin\r\nConnection: close\r\n\r\n`);
    expect(statusOf(reply)).toBe(200);
    const got = upstream.received[0]!;
    expect(got.rawHeaders.filter((_v, i) => i % 2 === 0 && /user.id/i.test(_v))).toEqual(['x-user-id']);
    expect(got.headers['x-user-id']).toBe('alice');
  });

  it('forwards them on a route that opts out, and only there', async () => {
    expect((await get('/legacy/x', { 'X_Legacy_Token': 't', 'X-Original-URL': '/legacy/y', 'X-Rewrite-URL': '/admin' })).status).toBe(200);
    const got = upstream.received[0]!.headers;
    expect(got['x_legacy_token']).toBe('t');
    expect(got['x-original-url']).toBe('/legacy/y');
    expect(got['x-rewrite-url']).toBeUndefined();
  });
});

describe('bodies answered before they were read', () => {
  it('closes the connection after a 413 for a declared Content-Length, and the next request goes on a new one', async () => {
    const reply = await raw(`POST /any/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n${'a'.repeat(200)}`);
    expect(statusOf(reply)).toBe(413);
    expect(lower(reply)).toContain('connection: close');
    expect(upstream.received).toHaveLength(0);
  });

  it('closes the connection after a 413 in the middle of a chunked body, with nothing of a second request forwarded', async () => {
    const { port } = new URL(gw.url);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), '127.0.0.1');
      let data = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (data += d));
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
      s.on('connect', () => {
        s.write('POST /any/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
        s.write(`400\r\n${'a'.repeat(1024)}\r\n400\r\n${'b'.repeat(1024)}\r\n`);
        // A request that looks pipelined after the body; where the body ends is the gateway's guess no more.
        setTimeout(() => s.write('GET /any/second HTTP/1.1\r\nHost: x\r\n\r\n'), 100);
      });
      setTimeout(() => reject(new Error('connection not closed')), 10_000);
    });
    expect(statusOf(reply)).toBe(413);
    expect(lower(reply)).toContain('connection: close');
    expect(upstream.received.map((r) => r.url)).not.toContain('/any/second');
  });
});

describe('chunk-size lines (a second, strict reader ahead of the parser)', () => {
  /** Sends `head` + `parts` (each its own write, a pause between) and collects the answer until close. */
  function chunked(path: string, parts: string[], pipelined = ''): Promise<string> {
    const { port } = new URL(gw.url);
    return new Promise((resolve) => {
      const s = connect(Number(port), '127.0.0.1');
      let data = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (data += d));
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
      const send = (i: number) => {
        if (i >= parts.length) return;
        if (!s.destroyed) s.write(parts[i]!);
        setTimeout(() => send(i + 1), 50);
      };
      s.on('connect', () => {
        s.write(`${pipelined}POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`);
        send(0);
      });
      setTimeout(() => s.destroy(), 5_000);
    });
  }

  it('answers 413 at a chunk declared beyond the route limit, before any of its bytes, even while the client stalls', async () => {
    const reply = await chunked('/any/big', ['FFFFFFFF\r\n', 'a'.repeat(100)]);
    expect(statusOf(reply)).toBe(413);
    expect(reasonOf(reply)).toBe('body_too_large');
    expect(lower(reply)).toContain('connection: close');
    expect(upstream.received).toHaveLength(0);
  });

  it('answers 413 when a later chunk crosses the limit, and the upstream never gets that chunk', async () => {
    upstream.handler = null;
    const reply = await chunked('/any/later', ['200\r\n' + 'a'.repeat(512) + '\r\n', '300\r\n', 'b'.repeat(768) + '\r\n0\r\n\r\n']);
    expect(statusOf(reply)).toBe(413);
    // The request was aborted mid-body: the upstream may have seen its start, never a complete request.
    expect(upstream.received).toHaveLength(0);
  });

  it.each([
    ['100,000 leading zeros', ['0'.repeat(100_000) + '5\r\nhello\r\n0\r\n\r\n']],
    ['17 hex digits', ['00000000000000005\r\nhello\r\n0\r\n\r\n']],
    ['a 1 KiB extension', ['5;' + 'e'.repeat(1024) + '\r\nhello\r\n0\r\n\r\n']],
    ['a 20 KiB extension', ['5;' + 'e'.repeat(20_000) + '\r\nhello\r\n0\r\n\r\n']],
    ['the absurd line in a later write', ['5\r\nhello\r\n', '000000000000000000001\r\nx\r\n0\r\n\r\n']],
  ])('answers 400 invalid_chunk to %s and forwards nothing', async (_name, parts) => {
    const reply = await chunked('/any/zeros', parts);
    expect(statusOf(reply)).toBe(400);
    expect(reasonOf(reply)).toBe('invalid_chunk');
    expect(upstream.received).toHaveLength(0);
  });

  it('finds the body of a chunked request pipelined behind another in the same write', async () => {
    const reply = await chunked('/any/second', ['0'.repeat(40) + '5\r\nhello\r\n0\r\n\r\n'], 'GET /any/first HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(statusOf(reply)).toBe(200);
    expect(reply).toContain('invalid_chunk');
    expect(upstream.received.map((r) => r.url)).toEqual(['/any/first']);
  });

  it('passes well-formed chunked bodies unchanged, split across writes anywhere', async () => {
    const body = '4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n';
    const reply = await chunked('/any/ok', [body.slice(0, 3), body.slice(3, 11), body.slice(11, 20), body.slice(20)]);
    expect(statusOf(reply)).toBe(200);
    expect(upstream.received[0]!.body.toString()).toBe('wikipedia');
  });
});

describe("the gateway's own answers carry the security headers and the request id", () => {
  const SECURITY = ['x-content-type-options', 'content-security-policy', 'cross-origin-opener-policy', 'cross-origin-embedder-policy', 'cross-origin-resource-policy', 'referrer-policy', 'x-request-id'];
  it.each([
    ['400 normalization', 'GET /a/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400],
    ['400 bad percent', 'GET /any/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400],
    ['404 no route', 'GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 404],
    ['413 body', 'POST /any/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n', 413],
    ['431 header', `GET /any/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ['505 version', 'GET /any/x HTTP/2.5\r\nHost: x\r\n\r\n', 505],
    ['400 parser', 'GET /any/x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n', 400],
    ['405 method', 'TRACE /any/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 405],
    ['400 ambiguous framing', 'POST /any/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ])('%s', async (_name, text, status) => {
    const reply = await raw(text);
    expect(statusOf(reply)).toBe(status);
    const head = lower(reply.slice(0, reply.indexOf('\r\n\r\n')));
    for (const h of SECURITY) expect(head, h).toContain(`\r\n${h}: `);
    expect(head).toContain('application/problem+json');
    expect(upstream.received).toHaveLength(0);
  });

  it('408 when the head never completes', async () => {
    const reply = await raw('GET /any/x HTTP/1.1\r\nHost: x\r\n', 8_000);
    expect(statusOf(reply)).toBe(408);
    for (const h of SECURITY) expect(lower(reply), h).toContain(`\r\n${h}: `);
  });
});

describe('cookies with look-alike names', () => {
  it('does not read a tossed "\\xA0__Host-csrf" as the CSRF cookie', async () => {
    // A sibling domain sets a cookie whose name starts with U+00A0; a trim() would make it __Host-csrf.
    const reply = await raw(`POST /form HTTP/1.1\r\nHost: x\r\nCookie: \xA0__Host-csrf=evil\r\nX-CSRF-Token: evil\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    expect(statusOf(reply)).toBe(403);
    expect(reasonOf(reply)).toBe('csrf_token_missing');
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses a second __Host-csrf and accepts the real one alone', async () => {
    const tossed = await raw('POST /form HTTP/1.1\r\nHost: x\r\nCookie: __Host-csrf=good; __Host-csrf=evil\r\nX-CSRF-Token: evil\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    expect(reasonOf(tossed)).toBe('csrf_token_mismatch');
    const ok = await raw('POST /form HTTP/1.1\r\nHost: x\r\nCookie: other=1;\t__Host-csrf=good \r\nX-CSRF-Token: good\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    expect(statusOf(ok)).toBe(200);
    expect(upstream.received).toHaveLength(1);
  });

  it('does not take a token from a look-alike cookie name', async () => {
    const token = await hs256({ sub: 'alice', exp: now() + 60 });
    const reply = await raw(`GET /me HTTP/1.1\r\nHost: x\r\nCookie: \xA0access_token=${token}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(reply)).toBe(401);
    expect(reasonOf(reply)).toBe('token_missing');
    expect(upstream.received).toHaveLength(0);
  });
});

describe('list claims in headers', () => {
  it('refuses a token whose list element holds the separator (it would read as two roles upstream)', async () => {
    const token = await hs256({ sub: 'mallory', roles: ['user,admin'], exp: now() + 60 });
    const reply = await get('/me', { authorization: `Bearer ${token}` });
    expect(reply.status).toBe(401);
    expect(JSON.parse(reply.body).reason).toBe('claim_header_invalid');
    expect(upstream.received).toHaveLength(0);
  });

  it.each([[['user', ' admin']], [['user', '']]])('refuses elements with whitespace or empty: %j', async (roles) => {
    const token = await hs256({ sub: 'mallory', roles, exp: now() + 60 });
    expect((await get('/me', { authorization: `Bearer ${token}` })).status).toBe(401);
    expect(upstream.received).toHaveLength(0);
  });

  it('forwards an ordinary list as a comma list', async () => {
    const token = await hs256({ sub: 'alice', roles: ['user', 'editor'], exp: now() + 60 });
    expect((await get('/me', { authorization: `Bearer ${token}` })).status).toBe(200);
    expect(upstream.received[0]!.headers['x-user-roles']).toBe('user,editor');
  });
});
