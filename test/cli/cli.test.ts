// The CLI as users run it: `npx portcullis validate | explain`.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli, writePolicy } from '../helpers/gateway.ts';

const run = promisify(execFile);

const POLICY = `version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams:
  app: { url: "http://app-user:\${env:APP_PASSWORD}@127.0.0.1:3000" }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    response_headers: { add: { x-frame-options: DENY } }
  - name: health
    match: { path: /health, methods: [GET] }
    upstream: app
`;

describe('portcullis validate', () => {
  it('says ok and exits 0 for a valid policy', async () => {
    const r = await runCli(['validate', writePolicy(POLICY)], { APP_PASSWORD: 's3cr3t-pass' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ok, 2 route\(s\)/);
  });

  it('lists every problem and exits 1', async () => {
    const file = writePolicy(POLICY.replace('path_prefix', 'prefix').replace('methods: [GET]', 'methods: [get]'));
    const r = await runCli(['validate', file], { APP_PASSWORD: 'x' });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${file}:7:14: unknown key "prefix" (did you mean "path_prefix"?)`);
    expect(r.stdout).toContain(`${file}:11:39: "get" is not a valid upper-case HTTP method`);
  });

  it('names a missing environment variable', async () => {
    const r = await runCli(['validate', writePolicy(POLICY)], {});
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/:4:15: environment variable APP_PASSWORD is not set/);
  });
});

describe('portcullis explain', () => {
  it('shows the route and chain one request takes, with secrets masked', async () => {
    const r = await runCli(['explain', writePolicy(POLICY), 'GET', '/api/../api/users?x=1'], { APP_PASSWORD: 's3cr3t-pass' });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ route: 'api', normalized: { path: '/api/users', query: '?x=1' } });
    expect(r.stdout).not.toContain('s3cr3t-pass');
    expect(r.stdout).toContain('********');
    expect((out.filters as { filter: string }[]).map((f) => f.filter)).toEqual(['response_headers']);
  });

  it('says 404 for a request no route takes', async () => {
    const r = await runCli(['explain', writePolicy(POLICY), 'POST', '/health'], { APP_PASSWORD: 'x' });
    expect(JSON.parse(r.stdout).answer).toEqual({ status: 404, reason: 'route_not_found', filter: 'gateway' });
  });

  it('runs each filter of the chain with the given headers and says what it decides', async () => {
    const file = writePolicy(`version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams:
  app: { url: "http://127.0.0.1:3000" }
cors:
  web: { origins: [https://app.example.com], methods: [GET, POST] }
rate_limits:
  per_ip: { limit: 5, window: 1m }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    cors: web
    csrf: { trusted_origins: [https://app.example.com] }
    rate_limit: per_ip
`);
    const refused = await runCli(['explain', file, 'POST', 'https://gw.example.com/api/items', '-H', 'Origin: https://evil.example.com', '-H', 'Content-Type: application/json']);
    expect(refused.code).toBe(0);
    const out = JSON.parse(refused.stdout) as { answer: unknown; decisions: { filter: string; decision: string; reason?: string }[] };
    expect(out.answer).toMatchObject({ status: 403, filter: 'csrf' });
    expect(out.decisions.map((d) => `${d.filter}:${d.decision}`)).toEqual(['cors:continue', 'csrf:deny', 'rate_limit:not_reached']);

    const allowed = await runCli(['explain', file, 'GET', 'https://gw.example.com/api/items', '-H', 'Origin: https://app.example.com']);
    const ok = JSON.parse(allowed.stdout) as { answer: unknown; decisions: { filter: string; decision: string }[] };
    expect(ok.answer).toEqual({ forward: 'app' });
    // the rate limit is not run: explaining a request must not count against anyone's limit
    expect(ok.decisions.map((d) => `${d.filter}:${d.decision}`)).toEqual(['cors:continue', 'csrf:continue', 'rate_limit:not_evaluated']);

    const office = writePolicy(`version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams:
  app: { url: "http://127.0.0.1:3000" }
routes:
  - name: internal
    match: { path_prefix: /internal }
    upstream: app
    ip_rules: { allow: [10.0.0.0/8] }
`);
    const outside = JSON.parse((await runCli(['explain', office, 'GET', '/internal/x'])).stdout) as { answer: unknown };
    expect(outside.answer).toEqual({ status: 403, reason: 'ip_not_allowed', filter: 'ip_rules' });
    const inside = JSON.parse((await runCli(['explain', office, 'GET', '/internal/x', '--client-ip', '10.1.2.3'])).stdout) as { answer: unknown };
    expect(inside.answer).toEqual({ forward: 'app' });

    const bad = await runCli(['explain', file, 'GET', '/api', '-H', 'no colon']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('expected "Name: value"');
  });
});

describe('npx portcullis', () => {
  it('runs the bin entry of package.json', async () => {
    // The bin entry runs dist/ (`npm ci` builds it through `prepare`); build it from the sources under
    // test so that this checks them, not an older build.
    await run(process.execPath, ['scripts/build.ts'], { cwd: ROOT });
    const { stdout } = await run('npx', ['--no-install', 'portcullis', 'validate', 'config/portcullis.yaml'], { cwd: ROOT });
    expect(stdout).toContain('config/portcullis.yaml: ok');
  });
});
