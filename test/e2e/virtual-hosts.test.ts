// Virtual hosts (`hosts:` groups) in the real gateway: each group's routes and defaults on its own names,
// flat routes beside them unchanged, and `unknown_host` for a Host nothing serves. Each route tags what it
// forwards (X-Vhost), so the recording upstream shows which group served a request.
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/cli/token.ts';
import { runCli, startGateway, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const SECRET = 'virtual-hosts-test-secret-0123456789abcdefgh';

function send(base: string, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const token = (roles: string[]) => mintToken({ secret: SECRET, kid: 'k1', alg: 'HS256', claims: { iss: 'https://id.example.com', aud: 'api', sub: 'u1', roles }, ttlMs: 60_000 });

describe('virtual hosts', () => {
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
  providers:
    main:
      jwt:
        issuer: https://id.example.com
        audience: api
        algorithms: [HS256]
        keys: [{ kid: k1, secret: "${SECRET}" }]
hosts:
  - names: [admin.example.com]
    defaults:
      auth: main
      response_headers: { add: { x-admin-host: "1" } }
    routes:
      - match: { path: /healthz }
        auth: none
        respond: { status: 200, body: "admin ok\\n" }
      - match: { path_prefix: / }
        upstream: app
        authorize: { roles_any: [admin] }
        request_headers: { add: { x-vhost: admin } }
  - names: ["*.example.com"]
    defaults: { auth: none }
    routes:
      - match: { path_prefix: / }
        upstream: app
        request_headers: { add: { x-vhost: wildcard } }
routes:
  - match: { host: legacy.test, path_prefix: / }
    upstream: app
    auth: none
    request_headers: { add: { x-vhost: flat } }
unknown_host: { status: 421 }
`);
  });
  afterAll(async () => {
    await gw?.stop();
    await up?.close();
  });

  async function served(host: string, path: string, headers: Record<string, string> = {}) {
    const before = up.received.length;
    const res = await send(gw.url, host, path, headers);
    const got = up.received.slice(before);
    return { status: res.status, headers: res.headers, body: res.body, vhost: got[0]?.headers['x-vhost'], forwarded: got.length };
  }

  it("the admin group's defaults hold on each of its routes: auth, response headers", async () => {
    const anonymous = await served('admin.example.com', '/users');
    expect(anonymous).toMatchObject({ status: 401, forwarded: 0 });
    expect(anonymous.headers['x-admin-host']).toBe('1');
    const user = await served('admin.example.com', '/users', { authorization: `Bearer ${await token(['user'])}` });
    expect(user).toMatchObject({ status: 403, forwarded: 0 });
    expect((JSON.parse(user.body) as { reason: string }).reason).toBe('role_missing');
    const admin = await served('admin.example.com', '/users', { authorization: `Bearer ${await token(['admin'])}` });
    expect(admin).toMatchObject({ status: 200, vhost: 'admin', forwarded: 1 });
    expect(admin.headers['x-admin-host']).toBe('1');
    // A route of the group overrides a default with its own key.
    const health = await served('admin.example.com', '/healthz');
    expect(health).toMatchObject({ status: 200, body: 'admin ok\n', forwarded: 0 });
  });

  it('the wildcard group serves other subdomains with its own defaults; flat routes keep working', async () => {
    expect(await served('www.example.com', '/users')).toMatchObject({ status: 200, vhost: 'wildcard', forwarded: 1 });
    expect(await served('shop.example.com:8443', '/x')).toMatchObject({ status: 200, vhost: 'wildcard', forwarded: 1 });
    expect(await served('legacy.test', '/x')).toMatchObject({ status: 200, vhost: 'flat', forwarded: 1 });
  });

  it('a Host no group names and no route serves gets unknown_host, never forwarded', async () => {
    const other = await served('example.net', '/users');
    expect(other).toMatchObject({ status: 421, forwarded: 0 });
    expect(other.headers['content-type']).toBe('application/problem+json');
    expect((JSON.parse(other.body) as { reason: string }).reason).toBe('host_not_found');
    // The bare domain is not a subdomain: *.example.com does not take it.
    expect(await served('example.com', '/')).toMatchObject({ status: 421, forwarded: 0 });
  });
});

describe('hosts: validation', () => {
  const base = 'version: 1\nlisteners: [{ address: 127.0.0.1:0 }]\nupstreams:\n  app: { url: "http://127.0.0.1:9" }\n';
  it('refuses a host inside a group route, naming its place', async () => {
    const r = await runCli(['validate', writePolicy(`${base}hosts:\n  - names: [a.example.com]\n    routes:\n      - match: { host: b.example.com, path_prefix: / }\n        upstream: app\n`)]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/:8:\d+: .*takes the group's names/);
  });
  it('names both places of a duplicate across groups and flat routes', async () => {
    const r = await runCli(['validate', writePolicy(`${base}routes:\n  - match: { host: a.example.com, path: /x }\n    upstream: app\nhosts:\n  - names: [a.example.com]\n    routes:\n      - match: { path: /x }\n        upstream: app\n`)]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/duplicate route: routes\[0\] already matches/);
  });
});
