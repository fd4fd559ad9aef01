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
    expect(JSON.parse(r.stdout).answer).toEqual({ status: 404, reason: 'route_not_found' });
  });
});

describe('npx portcullis', () => {
  it('runs the bin entry of package.json', async () => {
    const { stdout } = await run('npx', ['--no-install', 'portcullis', 'validate', 'config/portcullis.yaml'], { cwd: ROOT });
    expect(stdout).toContain('config/portcullis.yaml: ok');
  });
});
