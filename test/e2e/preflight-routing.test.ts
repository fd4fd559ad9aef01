// CORS preflights on method-split routes: a read route (open) and a write route (role required) on one
// path each carry their own CORS policy; the gateway answers a preflight from the route that would serve
// the method it asks for. A plain OPTIONS no route lists gets 405 with Allow and never reaches the
// upstream. The recording upstream shows what reached it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';
import { mintToken } from '../../src/cli/token.ts';

const SECRET = 'preflight-routing-test-secret-0123456789abcdef';
const APP = 'https://app.example.com';
const ADMIN = 'https://admin.example.com';

describe('preflights on method-split routes', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams:
  app: { url: "${up.url}" }
auth:
  default: main
  providers:
    main:
      jwt:
        issuer: https://id.example.com
        audience: api
        algorithms: [HS256]
        keys: [{ kid: k1, secret: "${SECRET}" }]
cors:
  read: { origins: ["${APP}", "${ADMIN}"], methods: [GET], max_age: 1m }
  write: { origins: ["${ADMIN}"], methods: [PUT, DELETE], allow_headers: [Authorization, Content-Type], credentials: true }
routes:
  - name: items-read
    match: { path_prefix: /items, methods: [GET, HEAD] }
    upstream: app
    auth: none
    cors: read
  - name: items-write
    match: { path_prefix: /items, methods: [PUT, DELETE] }
    upstream: app
    authorize: { roles_any: [editor] }
    cors: write
  - name: report
    match: { path: /report, methods: [GET, POST] }
    upstream: app
    auth: none
`);
  });
  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  const preflight = (path: string, origin: string, method: string, headers: Record<string, string> = {}) =>
    fetch(gw.url + path, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': method, ...headers } });

  it("answers each preflight from the route that serves the asked method, with that route's policy", async () => {
    const read = await preflight('/items/7', APP, 'GET');
    expect(read.status).toBe(204);
    expect(read.headers.get('access-control-allow-origin')).toBe(APP);
    expect(read.headers.get('access-control-allow-methods')).toBe('GET');
    expect(read.headers.get('access-control-max-age')).toBe('60');
    expect(read.headers.get('access-control-allow-credentials')).toBeNull();

    const write = await preflight('/items/7', ADMIN, 'PUT', { 'access-control-request-headers': 'authorization, content-type' });
    expect(write.status).toBe(204);
    expect(write.headers.get('access-control-allow-origin')).toBe(ADMIN);
    expect(write.headers.get('access-control-allow-methods')).toBe('PUT, DELETE');
    expect(write.headers.get('access-control-allow-credentials')).toBe('true');

    // The write route's policy does not list the app origin, though the read route's does.
    const refused = await preflight('/items/7', APP, 'DELETE');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { reason: string }).reason).toBe('origin_not_allowed');
    expect(up.received).toEqual([]);
  });

  it('the actual requests then meet their own route: open read, write needing the role', async () => {
    const get = await fetch(gw.url + '/items/7', { headers: { origin: APP } });
    expect(get.status).toBe(200);
    expect(get.headers.get('access-control-allow-origin')).toBe(APP);
    await get.text();
    const anonymous = await fetch(gw.url + '/items/7', { method: 'PUT', headers: { origin: ADMIN }, body: '{}' });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('access-control-allow-origin')).toBe(ADMIN);
    await anonymous.text();
    const token = await mintToken({ secret: SECRET, kid: 'k1', alg: 'HS256', claims: { iss: 'https://id.example.com', aud: 'api', sub: 'ed', roles: ['editor'] }, ttlMs: 60_000 });
    const put = await fetch(gw.url + '/items/7', { method: 'PUT', headers: { origin: ADMIN, authorization: `Bearer ${token}` }, body: '{}' });
    expect(put.status).toBe(200);
    await put.text();
    expect(up.received.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /items/7', 'PUT /items/7']);
  });

  it('a plain OPTIONS (no preflight) that no route lists is 405 with Allow, never forwarded', async () => {
    const before = up.received.length;
    const plain = await fetch(gw.url + '/items/7', { method: 'OPTIONS' });
    expect(plain.status).toBe(405);
    expect(plain.headers.get('content-type')).toBe('application/problem+json');
    expect(plain.headers.get('allow')!.split(', ').sort()).toEqual(['DELETE', 'GET', 'HEAD', 'PUT']);
    expect(((await plain.json()) as { reason: string }).reason).toBe('method_not_allowed');
    // A preflight to a route without CORS is routed as a plain OPTIONS: 405 too.
    const noCors = await preflight('/report', APP, 'POST');
    expect(noCors.status).toBe(405);
    expect(noCors.headers.get('allow')).toBe('GET, POST');
    await noCors.text();
    // A preflight for a method no route serves: no route takes OPTIONS there either.
    const unknown = await preflight('/items/7', ADMIN, 'PATCH');
    expect(unknown.status).toBe(405);
    await unknown.text();
    // Nowhere routed at all stays 404.
    const nowhere = await fetch(gw.url + '/nothing', { method: 'OPTIONS' });
    expect(nowhere.status).toBe(404);
    await nowhere.text();
    expect(up.received.length).toBe(before);
  });

  it('portcullis explain shows the preflight routed by the method it asks for', async () => {
    const r = await runCli(['explain', gw.policyFile, 'OPTIONS', '/items/7', '-H', `Origin: ${ADMIN}`, '-H', 'Access-Control-Request-Method: PUT']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { route: string; routed_as: string; answer: { status: number; reason: string } };
    expect(out.route).toBe('items-write');
    expect(out.routed_as).toBe('PUT');
    expect(out.answer).toMatchObject({ status: 204, reason: 'preflight' });
  });
});

describe('a CORS route need not list OPTIONS any more', () => {
  it('validates a method-limited CORS route without OPTIONS', async () => {
    const file = writePolicy('version: 1\nlisteners: [{ address: 127.0.0.1:0 }]\nupstreams:\n  app: { url: "http://127.0.0.1:9" }\nroutes:\n  - match: { path: /x, methods: [POST] }\n    upstream: app\n    cors: { origins: [https://a.example.com], methods: [POST] }\n');
    const r = await runCli(['validate', file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
