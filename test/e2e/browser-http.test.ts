// Browser protections through the real gateway process, driven with raw HTTP: every reason code and the
// usual attempts to get past each protection, each asserting what the upstream received.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { connect } from 'node:net';
import { reasonOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const FRONTEND = 'https://app.example.com';
const TOKEN = 'b1946ac92492d2347c6235b4d2611184b1946ac92492d2347c6235b4d2611184';
const EXE = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(58, 0x90), Buffer.from('This program cannot be run in DOS mode.')]);
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('IHDR-image-bytes')]);

let upstream: RecordingUpstream;
let gw: RunningGateway;
/** Every byte any connection delivered to the upstream, to prove what never arrived. */
let upstreamBytes: Buffer[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  upstream.server.on('connection', (s) => s.on('data', (d: Buffer) => upstreamBytes.push(d)));
  upstream.handler = (req, res, body) => {
    const headers: Record<string, string | string[]> = {
      'content-type': 'application/json',
      server: 'test-upstream/1.0',
      'x-powered-by': 'Express',
      'access-control-allow-origin': '*', // an over-permissive app: the gateway must not pass this on
    };
    if (req.url?.startsWith('/api/login')) headers['set-cookie'] = ['session=s3cr3t.v4lue=; Path=/; SameSite=None', 'csrf=abc123; Path=/'];
    res.writeHead(200, headers);
    res.end(JSON.stringify({ method: req.method, url: req.url, body: body.length }));
  };
  gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
trusted_proxies: [127.0.0.1]
upstreams:
  app: { url: "${upstream.url}" }
cors:
  web:
    origins: ["\${env:FRONTEND_ORIGIN}", "https://*.example.org"]
    credentials: true
    methods: [GET, POST]
    allow_headers: [Content-Type, X-CSRF-Token]
headers:
  default: {}
csrf:
  static: { token: "\${env:CSRF_TOKEN}", trusted_origins: ["\${env:FRONTEND_ORIGIN}"] }
  double: { double_submit_cookie: csrf }
cookies:
  default: { public_url: "\${env:BASE_URL}", script_readable: [csrf] }
body:
  images:
    content_types: [multipart/form-data]
    multipart: { part_types: [image/png, image/jpeg], max_parts: 3, max_part_size: 2KiB }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    cors: web
    csrf: static
  - name: double
    match: { path_prefix: /double }
    upstream: app
    csrf: double
  - name: upload
    match: { path_prefix: /upload }
    upstream: app
    cors: web
    body: images
    max_body_size: 4KiB
  - name: json
    match: { path_prefix: /json }
    upstream: app
    body: { content_types: [application/json] }
`, { env: { FRONTEND_ORIGIN: `${FRONTEND}, https://admin.example.com`, CSRF_TOKEN: TOKEN, BASE_URL: 'https://api.example.com' } });
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
  upstreamBytes = [];
});

interface Answer {
  status: number;
  reason: string | undefined;
  headers: Record<string, string[]>;
  text: string;
}

/** One raw HTTP/1.1 request; header lines are sent exactly as given (case, duplicates). */
async function send(method: string, path: string, headers: [string, string][] = [], body?: Buffer | string): Promise<Answer> {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: api.example.com', ...headers.map(([k, v]) => `${k}: ${v}`), 'Connection: close'];
  if (body !== undefined && !headers.some(([k]) => /^(content-length|transfer-encoding)$/i.test(k))) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  const text = await rawBytes(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), body === undefined ? Buffer.alloc(0) : Buffer.from(body)]));
  const headEnd = text.indexOf('\r\n\r\n');
  const out: Record<string, string[]> = {};
  for (const line of text.slice(0, headEnd).split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    const k = line.slice(0, i).toLowerCase();
    (out[k] ??= []).push(line.slice(i + 1).trim());
  }
  return { status: statusOf(text), reason: reasonOf(text), headers: out, text };
}

/** Writes bytes as they are (the shared raw helper writes strings) and reads until the server closes. */
function rawBytes(data: Buffer): Promise<string> {
  const { hostname, port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const got: Buffer[] = [];
    const done = () => resolve(Buffer.concat(got).toString('latin1'));
    socket.on('data', (d: Buffer) => got.push(d));
    socket.on('close', done);
    socket.on('error', (err) => (got.length ? done() : reject(err)));
    socket.setTimeout(5_000, () => socket.destroy());
    socket.write(data);
  });
}

const acaHeaders = (a: Answer) => Object.keys(a.headers).filter((h) => h.startsWith('access-control-'));
const sawUpstreamBytes = (marker: string) => Buffer.concat(upstreamBytes).includes(Buffer.from(marker));

describe('CORS through the gateway', () => {
  it('answers an allowed preflight itself (204, never forwarded)', async () => {
    const a = await send('OPTIONS', '/api/items', [['Origin', FRONTEND], ['Access-Control-Request-Method', 'POST'], ['Access-Control-Request-Headers', 'content-type,x-csrf-token']]);
    expect(a.status).toBe(204);
    expect(a.headers['access-control-allow-origin']).toEqual([FRONTEND]);
    expect(a.headers['access-control-allow-credentials']).toEqual(['true']);
    expect(a.headers['access-control-allow-methods']).toEqual(['GET, POST']);
    expect(a.headers.vary).toEqual(['Origin, Access-Control-Request-Method, Access-Control-Request-Headers']);
    expect(a.headers['content-length']).toBeUndefined();
    expect(upstream.received).toHaveLength(0);
  });

  const lookAlikes = [
    'https://app.example.com.evil.net',
    'https://evilapp.example.com',
    'http://app.example.com',
    'https://app.example.com:8443',
    'https://example.org',
    'https://example.org.evil.net',
    'https://a.example.org@evil.net',
    'null',
    `${FRONTEND}, https://evil.net`,
  ];
  it.each(lookAlikes)('refuses the preflight of %s with 403 origin_not_allowed and no Access-Control-*', async (origin) => {
    const a = await send('OPTIONS', '/api/items', [['Origin', origin], ['Access-Control-Request-Method', 'POST']]);
    expect(a.status).toBe(403);
    expect(a.reason).toBe('origin_not_allowed');
    expect(acaHeaders(a)).toEqual([]);
    expect(a.headers.vary?.[0]).toContain('Origin');
    expect(upstream.received).toHaveLength(0);
  });

  it('counts refused preflights as denies by reason, allowed ones not', async () => {
    await send('OPTIONS', '/api/items', [['Origin', FRONTEND], ['Access-Control-Request-Method', 'POST']]);
    await send('OPTIONS', '/api/items', [['Origin', 'https://evil.net'], ['Access-Control-Request-Method', 'POST']]);
    const metrics = await (await fetch(`${gw.admin}/metrics`)).text();
    expect(metrics).toMatch(/portcullis_denies_total\{[^}]*filter="cors"[^}]*reason="origin_not_allowed"[^}]*\} [1-9]/);
    expect(metrics).not.toMatch(/reason="preflight"/);
  });

  it('refuses two Origin headers (one allowed, one not)', async () => {
    const a = await send('OPTIONS', '/api/items', [['Origin', FRONTEND], ['Origin', 'https://evil.net'], ['Access-Control-Request-Method', 'POST']]);
    expect(a.status).toBe(403);
    expect(a.reason).toBe('origin_not_allowed');
    expect(upstream.received).toHaveLength(0);
  });

  it('matches header names in any case', async () => {
    const a = await send('OPTIONS', '/api/items', [['oRiGiN', 'https://deep.sub.example.org'], ['ACCESS-CONTROL-REQUEST-METHOD', 'GET']]);
    expect(a.status).toBe(204);
    expect(a.headers['access-control-allow-origin']).toEqual(['https://deep.sub.example.org']);
  });

  it('refuses methods and headers outside the policy', async () => {
    const m = await send('OPTIONS', '/api/items', [['Origin', FRONTEND], ['Access-Control-Request-Method', 'DELETE']]);
    expect([m.status, m.reason]).toEqual([403, 'cors_method_not_allowed']);
    const h = await send('OPTIONS', '/api/items', [['Origin', FRONTEND], ['Access-Control-Request-Method', 'POST'], ['Access-Control-Request-Headers', 'x-admin']]);
    expect([h.status, h.reason]).toEqual([403, 'cors_headers_not_allowed']);
    expect(acaHeaders(m).concat(acaHeaders(h))).toEqual([]);
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses a cross-site WebSocket handshake before the upstream sees it', async () => {
    const ws: [string, string][] = [['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']];
    const lines = ['GET /api/ws HTTP/1.1', 'Host: api.example.com', 'Connection: Upgrade', ...[...ws, ['Origin', 'https://evil.net']].map(([k, v]) => `${k}: ${v}`)];
    const text = await rawBytes(Buffer.from(lines.join('\r\n') + '\r\n\r\n'));
    expect([statusOf(text), reasonOf(text)]).toEqual([403, 'origin_not_allowed']);
    expect(sawUpstreamBytes('/api/ws')).toBe(false);
  });

  it('forwards an actual request from a disallowed origin without any Access-Control-* (the upstream\'s "*" removed)', async () => {
    const a = await send('GET', '/api/items', [['Origin', 'https://evil.net']]);
    expect(a.status).toBe(200);
    expect(acaHeaders(a)).toEqual([]);
    expect(a.headers.vary).toEqual(['Origin']);
    expect(upstream.received).toHaveLength(1);
  });

  it('gives an allowed origin its headers, on the gateway\'s own refusals too', async () => {
    const ok = await send('GET', '/api/items', [['Origin', FRONTEND]]);
    expect(ok.headers['access-control-allow-origin']).toEqual([FRONTEND]);
    const refused = await send('POST', '/api/items', [['Origin', FRONTEND]], '{}');
    expect([refused.status, refused.reason]).toEqual([403, 'csrf_token_missing']);
    expect(refused.headers['access-control-allow-origin']).toEqual([FRONTEND]);
    expect(upstream.received).toHaveLength(1);
  });
});

describe('security headers and cookies through the gateway', () => {
  it('sets the default policy, removes Server and X-Powered-By, no HSTS over plain HTTP', async () => {
    const a = await send('GET', '/api/items');
    expect(a.headers['x-content-type-options']).toEqual(['nosniff']);
    expect(a.headers['cross-origin-opener-policy']).toEqual(['same-origin']);
    expect(a.headers['cross-origin-embedder-policy']).toEqual(['require-corp']);
    expect(a.headers['cross-origin-resource-policy']).toEqual(['same-origin']);
    expect(a.headers['content-security-policy']).toEqual(["default-src 'none'; frame-ancestors 'none'"]);
    expect(a.headers.server).toBeUndefined();
    expect(a.headers['x-powered-by']).toBeUndefined();
    expect(a.headers['strict-transport-security']).toBeUndefined();
  });

  it('sends HSTS when a trusted TLS-terminating proxy says https, and on refusals too', async () => {
    const a = await send('GET', '/api/items', [['X-Forwarded-Proto', 'https']]);
    expect(a.headers['strict-transport-security']).toEqual(['max-age=31536000; includeSubDomains']);
    const refused = await send('POST', '/json/x', [['X-Forwarded-Proto', 'https'], ['Content-Type', 'text/plain']], 'hi');
    expect(refused.status).toBe(415);
    expect(refused.headers['strict-transport-security']).toEqual(['max-age=31536000; includeSubDomains']);
    expect(refused.headers['x-content-type-options']).toEqual(['nosniff']);
  });

  it('rewrites Set-Cookie flags and leaves the values alone', async () => {
    const a = await send('GET', '/api/login');
    expect(a.headers['set-cookie']).toEqual([
      'session=s3cr3t.v4lue=; Path=/; Secure; HttpOnly; SameSite=Lax', // None raised to the policy's Lax
      'csrf=abc123; Path=/; Secure; SameSite=Lax',
    ]);
  });
});

describe('CSRF through the gateway', () => {
  const post = (headers: [string, string][], path = '/api/items') => send('POST', path, [['Content-Type', 'application/json'], ...headers], '{"a":1}');

  it('lets the right token through, in any header-name case', async () => {
    const a = await post([['x-CsRf-ToKeN', TOKEN]]);
    expect(a.status).toBe(200);
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]!.body.toString()).toBe('{"a":1}');
  });

  const refusals: [string, [string, string][], string, string?][] = [
    ['no token', [], 'csrf_token_missing'],
    ['wrong token', [['X-CSRF-Token', TOKEN.replace(/.$/, '0')]], 'csrf_token_mismatch'],
    ['token twice', [['X-CSRF-Token', TOKEN], ['X-CSRF-Token', TOKEN]], 'csrf_token_mismatch'],
    ['token in a cookie', [['Cookie', `X-CSRF-Token=${TOKEN}; csrf_token=${TOKEN}`]], 'csrf_token_missing'],
    ['token in the query string', [], 'csrf_token_missing', `/api/items?csrf_token=${TOKEN}&X-CSRF-Token=${TOKEN}`],
    ['token in a look-alike header', [['X-CSRF-Token2', TOKEN], ['X-XSRF-Token', TOKEN]], 'csrf_token_missing'],
    ['cross-site with the token', [['Sec-Fetch-Site', 'cross-site'], ['Origin', 'https://evil.net'], ['X-CSRF-Token', TOKEN]], 'cross_site_request'],
    ['null origin with the token', [['Origin', 'null'], ['X-CSRF-Token', TOKEN]], 'cross_site_request'],
    ['foreign referer with the token', [['Referer', 'https://evil.net/page'], ['X-CSRF-Token', TOKEN]], 'cross_site_request'],
    ['two Sec-Fetch-Site values', [['Sec-Fetch-Site', 'same-origin'], ['Sec-Fetch-Site', 'cross-site'], ['X-CSRF-Token', TOKEN]], 'cross_site_request'],
  ];
  it.each(refusals)('%s → 403 %s, nothing forwarded', async (_n, headers, reason, path) => {
    const a = await post(headers, path);
    expect([a.status, a.reason]).toEqual([403, reason]);
    expect(upstream.received).toHaveLength(0);
    expect(sawUpstreamBytes('{"a":1}')).toBe(false);
  });

  it('accepts the trusted frontend cross-site, with the token', async () => {
    const a = await post([['Sec-Fetch-Site', 'cross-site'], ['Origin', FRONTEND], ['X-CSRF-Token', TOKEN]]);
    expect(a.status).toBe(200);
    expect(upstream.received).toHaveLength(1);
  });

  it('lets safe methods through without a token', async () => {
    expect((await send('GET', '/api/items', [['Sec-Fetch-Site', 'cross-site']])).status).toBe(200);
  });

  it('double-submit: header must equal the cookie, a tossed second cookie is refused', async () => {
    expect((await post([['Cookie', 'csrf=r4nd0m'], ['X-CSRF-Token', 'r4nd0m']], '/double')).status).toBe(200);
    const tossed = await post([['Cookie', 'csrf=evil; csrf=r4nd0m'], ['X-CSRF-Token', 'evil']], '/double');
    expect([tossed.status, tossed.reason]).toEqual([403, 'csrf_token_mismatch']);
    const missing = await post([['X-CSRF-Token', 'r4nd0m']], '/double');
    expect([missing.status, missing.reason]).toEqual([403, 'csrf_token_missing']);
    expect(upstream.received).toHaveLength(1);
  });
});

describe('request bodies and uploads through the gateway', () => {
  const B = '----portcullis-test-boundary';
  const form = (parts: { name: string; filename?: string; type?: string; data: Buffer }[]) =>
    Buffer.concat([
      ...parts.flatMap((p) => [
        Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`),
        p.data,
        Buffer.from('\r\n'),
      ]),
      Buffer.from(`--${B}--\r\n`),
    ]);
  const ct: [string, string] = ['Content-Type', `multipart/form-data; boundary=${B}`];

  it('forwards a real image upload byte for byte', async () => {
    const body = form([{ name: 'caption', data: Buffer.from('cat') }, { name: 'photo', filename: 'cat.png', type: 'image/png', data: PNG }]);
    const a = await send('POST', '/upload/photo', [ct], body);
    expect(a.status).toBe(200);
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]!.body.equals(body)).toBe(true);
  });

  it('refuses a renamed executable uploaded as an image; the upstream never sees its bytes', async () => {
    const body = form([{ name: 'photo', filename: 'cat.png', type: 'image/png', data: EXE }]);
    const a = await send('POST', '/upload/photo', [ct], body);
    expect([a.status, a.reason]).toEqual([415, 'part_content_mismatch']);
    expect(upstream.received).toHaveLength(0);
    expect(sawUpstreamBytes('This program')).toBe(false);
    expect(sawUpstreamBytes('POST /upload/photo')).toBe(false); // refused in its first part: not even the head went out
  });

  it('refuses it chunked too, after a valid first part', async () => {
    const body = form([{ name: 'caption', data: Buffer.from('cat') }, { name: 'photo', filename: 'cat.jpg', type: 'image/jpeg', data: EXE }]);
    const chunked = Buffer.concat([Buffer.from(`${(40).toString(16)}\r\n`), body.subarray(0, 40), Buffer.from(`\r\n${(body.length - 40).toString(16)}\r\n`), body.subarray(40), Buffer.from('\r\n0\r\n\r\n')]);
    const a = await send('POST', '/upload/photo', [ct, ['Transfer-Encoding', 'chunked']], chunked);
    expect([a.status, a.reason]).toEqual([415, 'part_content_mismatch']);
    expect(upstream.received).toHaveLength(0);
    expect(sawUpstreamBytes('This program')).toBe(false);
  });

  it('refuses a part type outside the allow-list, and a body type outside the route\'s list', async () => {
    const svg = await send('POST', '/upload/photo', [ct], form([{ name: 'photo', filename: 'x.svg', type: 'image/svg+xml', data: Buffer.from('<svg onload=alert(1)>') }]));
    expect([svg.status, svg.reason]).toEqual([415, 'part_type_not_allowed']);
    const json = await send('POST', '/upload/photo', [['Content-Type', 'application/json']], '{}');
    expect([json.status, json.reason]).toEqual([415, 'unsupported_media_type']);
    const caseTrick = await send('POST', '/json/x', [['CONTENT-TYPE', 'APPLICATION/JSON']], '{}');
    expect(caseTrick.status).toBe(200);
    const none = await send('POST', '/json/x', [], '{}');
    expect([none.status, none.reason]).toEqual([415, 'unsupported_media_type']);
    expect(upstream.received).toHaveLength(1);
    expect(sawUpstreamBytes('<svg')).toBe(false);
  });

  it('refuses too many parts and a part over its size limit', async () => {
    const many = await send('POST', '/upload/photo', [ct], form(Array.from({ length: 4 }, (_, i) => ({ name: `f${i}`, data: Buffer.from('x') }))));
    expect([many.status, many.reason]).toEqual([413, 'too_many_parts']);
    const large = await send('POST', '/upload/photo', [ct], form([{ name: 'photo', filename: 'big.png', type: 'image/png', data: Buffer.concat([PNG, Buffer.alloc(3000, 0x42)]) }]));
    expect([large.status, large.reason]).toEqual([413, 'part_too_large']);
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses a malformed multipart body', async () => {
    const noBoundary = await send('POST', '/upload/photo', [['Content-Type', 'multipart/form-data']], 'x');
    expect([noBoundary.status, noBoundary.reason]).toEqual([400, 'multipart_invalid']);
    const garbage = await send('POST', '/upload/photo', [ct], 'not multipart at all');
    expect([garbage.status, garbage.reason]).toEqual([400, 'multipart_invalid']);
    // a second part behind a bare-LF delimiter, which a lenient upstream parser would accept
    const hidden = Buffer.concat([
      Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`),
      PNG,
      Buffer.from(`\n--${B}\r\nContent-Disposition: form-data; name="evil"; filename="b.png"\r\nContent-Type: image/png\r\n\r\n`),
      EXE,
      Buffer.from(`\r\n--${B}--\r\n`),
    ]);
    const smuggled = await send('POST', '/upload/photo', [ct], hidden);
    expect([smuggled.status, smuggled.reason]).toEqual([400, 'multipart_invalid']);
    expect(upstream.received).toHaveLength(0);
    expect(sawUpstreamBytes('This program')).toBe(false);
  });

  it('refuses a declared oversized body before forwarding, and an oversized chunked body mid-stream', async () => {
    const big = await send('POST', '/upload/photo', [ct, ['Content-Length', '999999']]);
    expect([big.status, big.reason]).toEqual([413, 'body_too_large']);
    // three parts, each under max_part_size, together over the route's 4KiB
    const body = form([0, 1, 2].map((i) => ({ name: `p${i}`, filename: `${i}.png`, type: 'image/png', data: Buffer.concat([PNG, Buffer.alloc(1900, 0x41)]) })));
    const chunks = [];
    for (let i = 0; i < body.length; i += 1000) {
      const c = body.subarray(i, i + 1000);
      chunks.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
    }
    chunks.push(Buffer.from('0\r\n\r\n'));
    const a = await send('POST', '/upload/photo', [ct, ['Transfer-Encoding', 'chunked']], Buffer.concat(chunks));
    expect([a.status, a.reason]).toEqual([413, 'body_too_large']);
    expect(upstream.received).toHaveLength(0);
    expect(Buffer.concat(upstreamBytes).length).toBeLessThan(4096 + 1024); // at most the limit plus a request head
  });
});
