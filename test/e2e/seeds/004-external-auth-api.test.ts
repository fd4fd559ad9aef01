// App 004 (a Python API whose auth is delegated to an external service) behind the real gateway running the
// shipped policy config/examples/004-external-auth-api.yaml in production mode, behind a "load balancer"
// (the test client on 127.0.0.1, the policy's trusted proxy), with a real auth service that fails and
// recovers, real Redis (127.0.0.1:6379, a key prefix of its own) and the audit log in a file of its own.
// One test per row of the app's table in ../shared/seeds/README.md.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli, startGateway, tempDir, waitFor, type RunningGateway } from '../../helpers/gateway.ts';
import { expectWithinLimit, runUntilLimited } from '../../helpers/ratelimit.ts';
import { auditLines, client, examplePolicy, jsonLines } from '../../helpers/seeds.ts';
import { startUpstream, type RecordingUpstream } from '../../helpers/upstream.ts';

// JWT-shaped bearer tokens the auth service knows (it is their issuer; the gateway only forwards them).
const USER_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1LTQyIiwicm9sZSI6InVzZXIifQ.dXNlci1zaWduYXR1cmUtc2VjcmV0';
const ADMIN_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhLTEiLCJyb2xlIjoiYWRtaW4ifQ.YWRtaW4tc2lnbmF0dXJlLXNlY3JldA';
const CORS_ORIGINS = 'https://app.example.com,https://admin.example.com';

type Mode = 'ok' | 'fail' | 'hang_once';
let mode: Mode = 'ok';
let authPort = 0;
let auth: Server;
const authCalls: { at: number; headers: IncomingHttpHeaders }[] = [];

function authHandler(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) {
  authCalls.push({ at: Date.now(), headers: req.headers });
  if (mode === 'fail') return void res.writeHead(500).end('down');
  if (mode === 'hang_once') {
    mode = 'ok';
    return; // never answers: the gateway's 5s timeout must end this attempt
  }
  const h = req.headers.authorization;
  if (h === `Bearer ${USER_TOKEN}`) return void res.writeHead(200, { 'x-user-id': 'u-42', 'x-user-roles': 'user' }).end();
  if (h === `Bearer ${ADMIN_TOKEN}`) return void res.writeHead(200, { 'x-user-id': 'a-1', 'x-user-roles': 'admin' }).end();
  res.writeHead(401, { 'www-authenticate': 'Bearer realm="auth-service"' }).end('who are you');
}

async function startAuth(port = 0): Promise<void> {
  auth = createServer(authHandler);
  await new Promise<void>((r) => auth.listen(port, '127.0.0.1', () => r()));
  authPort = (auth.address() as AddressInfo).port;
}

async function stopAuth(): Promise<void> {
  auth.closeAllConnections();
  await new Promise((r) => auth.close(() => r(undefined)));
}

let app: RecordingUpstream;
let gw: RunningGateway;
let auditFile: string;
let lb: ReturnType<typeof client>;
const prefix = `portcullis:004:test-${randomUUID()}:`;

function env(): Record<string, string> {
  // RATE_LIMIT_PER_MINUTE unset: the policy's default, the app's 60.
  return { AUTH_SERVICE_URL: `http://127.0.0.1:${authPort}/verify`, CORS_ORIGINS, REDIS_URL: 'redis://127.0.0.1:6379', LOG_LEVEL: 'WARNING' };
}

function policy(): string {
  return examplePolicy('004-external-auth-api', {
    '0.0.0.0:8080': '127.0.0.1:0',
    '10.0.0.0/8': '127.0.0.1/32', // the load balancer
    '127.0.0.1:9901': '127.0.0.1:0',
    '/var/log/portcullis/audit.log': auditFile,
    'http://127.0.0.1:8000': app.url,
    'portcullis:004:': prefix,
  });
}

/** A client behind the load balancer: its address arrives in X-Forwarded-For. */
function viaLb(path: string, clientIp: string, token: string | null = USER_TOKEN, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return lb.send(`${gw.url}${path}`, {
    method: options.method,
    headers: { 'x-forwarded-for': clientIp, ...(token ? { authorization: `Bearer ${token}` } : {}), ...options.headers },
    body: options.body,
  });
}

beforeAll(async () => {
  auditFile = join(tempDir(), 'audit.log');
  await startAuth();
  app = await startUpstream();
  app.handler = (req, res) => {
    res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, user: req.headers['x-user-id'] ?? null }));
  };
  gw = await startGateway(policy(), { env: env() });
  lb = client();
});

afterAll(async () => {
  await lb?.close();
  await gw?.stop();
  await app?.close();
  await stopAuth();
});

beforeEach(() => {
  mode = 'ok';
  authCalls.length = 0;
  app.received.length = 0;
});

describe('004: API behind an external auth service', () => {
  it('auth delegated to an external service; 3 attempts, exponential backoff, 5 s timeout; 503 if unavailable', async () => {
    // The service answers: its decision lets the request in, the identity it returns reaches the app.
    const ok = await viaLb('/api/items', '198.51.100.1');
    expect(ok.status).toBe(200);
    expect(app.received[0]!.headers['x-user-id']).toBe('u-42');
    expect(authCalls[0]!.headers.authorization).toBe(`Bearer ${USER_TOKEN}`);
    // It refuses: its 401 and challenge go to the client, nothing reaches the app.
    app.received.length = 0;
    const no = await viaLb('/api/items', '198.51.100.1', 'eyJhbGciOiJub25lIn0.e30.');
    expect([no.status, no.reason]).toEqual([401, 'auth_denied']);
    expect(no.headers['www-authenticate']).toBe('Bearer realm="auth-service"');
    expect(app.received).toEqual([]);

    // It fails: exactly 3 attempts, 200ms then 400ms apart (with equal jitter), then 503 with Retry-After.
    mode = 'fail';
    authCalls.length = 0;
    const down = await viaLb('/api/items', '198.51.100.1');
    expect([down.status, down.reason]).toEqual([503, 'auth_unavailable']);
    expect(Number(down.headers['retry-after'])).toBeGreaterThan(0);
    expect(authCalls.length).toBe(3);
    const [g1, g2] = [authCalls[1]!.at - authCalls[0]!.at, authCalls[2]!.at - authCalls[1]!.at];
    expect(g1).toBeGreaterThanOrEqual(95);
    expect(g1).toBeLessThan(600);
    expect(g2).toBeGreaterThanOrEqual(195);
    expect(g2).toBeLessThan(1000);
    // It is gone (connection refused): 503 too; back on the same port: requests pass again.
    await stopAuth();
    const gone = await viaLb('/api/items', '198.51.100.1');
    expect([gone.status, gone.reason]).toEqual([503, 'auth_unavailable']);
    await startAuth(authPort);
    mode = 'ok';
    expect((await viaLb('/api/items', '198.51.100.1')).status).toBe(200);
    expect(app.received.some((r) => r.url === '/api/items' && r.method === 'GET')).toBe(true);

    // It hangs: the 5 s timeout ends the attempt, and the next attempt answers.
    mode = 'hang_once';
    authCalls.length = 0;
    const started = Date.now();
    const slow = await viaLb('/api/items', '198.51.100.2');
    const took = Date.now() - started;
    expect(slow.status).toBe(200);
    expect(authCalls.length).toBe(2);
    expect(took).toBeGreaterThanOrEqual(5_000);
    expect(took).toBeLessThan(6_500);
  }, 20_000);

  it('RBAC: user read-only, admin full CRUD; Authorization: Bearer', async () => {
    expect((await viaLb('/api/items/1', '198.51.100.3', USER_TOKEN)).status).toBe(200);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const r = await viaLb('/api/items/1', '198.51.100.3', USER_TOKEN, { method, headers: { 'content-type': 'application/json' }, body: '{}' });
      expect([method, r.status, r.reason]).toEqual([method, 403, 'method_not_allowed_for_role']);
    }
    expect(app.received.map((r) => r.method)).toEqual(['GET']);
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) {
      const r = await viaLb('/api/items/1', '198.51.100.3', ADMIN_TOKEN, { method, headers: { 'content-type': 'application/json' }, body: method === 'GET' ? undefined : '{}' });
      expect([method, r.status < 300]).toEqual([method, true]);
    }
    // Without a bearer token the service says who it does not know: 401.
    expect((await viaLb('/api/items/1', '198.51.100.3', null)).status).toBe(401);
  });

  it('60 requests per minute per IP (RATE_LIMIT_PER_MINUTE), 429; client IP only from trusted proxies', async () => {
    // 60 a minute: a burst of 60, then one more per second elapsed; a request Redis did not answer in
    // time is counted by the local fallback bucket instead (test/helpers/ratelimit.ts).
    const opts = { route: 'api', limit: 'per_ip', perWindow: 60, windowMs: 60_000, concurrency: 10, limitedWanted: 1 };
    const run = await runUntilLimited(gw, () => viaLb('/api/items', '203.0.113.7'), opts);
    const statuses = run.answers.map((r) => r.status);
    expect(statuses.slice(0, 60)).toEqual(Array(60).fill(200));
    expectWithinLimit(run);
    expect(run.answers[0]!.headers['ratelimit-policy']).toBe('"per_ip";q=60;w=60');
    const limited = run.answers.find((r) => r.status === 429)!;
    expect([limited.status, limited.reason]).toEqual([429, 'rate_limited']);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(String(limited.headers.ratelimit)).toMatch(/^"per_ip";r=0;t=\d+$/);
    // RATE_LIMIT_PER_MINUTE set: the limit the policy compiles to follows it.
    const tuned = await runCli(['explain', 'config/examples/004-external-auth-api.yaml'], { ...env(), RATE_LIMIT_PER_MINUTE: '30' });
    expect(tuned.stdout).toMatch(/"name": "per_ip",\s*"limit": 30,\s*"window_ms": 60000/);
    // Another client behind the same load balancer has its own 60.
    expect((await viaLb('/api/items', '203.0.113.8')).status).toBe(200);

    // A peer that is not a trusted proxy cannot pick its address with X-Forwarded-For.
    const direct = new HttpAgent({ keepAlive: true, localAddress: '127.0.0.2' } as ConstructorParameters<typeof HttpAgent>[0]);
    const fromOtherPeer = (xff: string) => new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/api/items`, { agent: direct, localAddress: '127.0.0.2', headers: { 'x-forwarded-for': xff, authorization: `Bearer ${USER_TOKEN}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    try {
      // Each request "from" another X-Forwarded-For, all in one bucket: the peer's own address.
      let n = 0;
      const other = await runUntilLimited(gw, async () => ({ status: await fromOtherPeer(`192.0.2.${n++ % 250}`) }), { ...opts, limitedWanted: 8 });
      expect(other.answers.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(8);
      expectWithinLimit(other);
    } finally {
      direct.destroy();
    }
    // (The access log is written in batches, at most 100 ms behind.)
    const access = await waitFor(() => {
      const lines = jsonLines(gw.stdout()).filter((l) => l.route === 'api');
      return lines.some((l) => l.client_ip === '127.0.0.2') ? lines : undefined;
    });
    expect(access.some((l) => String(l.client_ip).startsWith('192.0.2.'))).toBe(false);
  });

  it('CORS_ORIGINS whitelist, never *', async () => {
    const preflight = (origin: string) => lb.send(`${gw.url}/api/items`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization' } });
    for (const origin of CORS_ORIGINS.split(',')) {
      const r = await preflight(origin);
      expect(r.status).toBe(204);
      expect(r.headers['access-control-allow-origin']).toBe(origin);
    }
    const evil = await preflight('https://evil.example.net');
    expect([evil.status, evil.reason]).toEqual([403, 'origin_not_allowed']);
    expect(authCalls).toEqual([]); // preflights never bother the auth service or the app
    expect(app.received).toEqual([]);
    const read = await viaLb('/api/items', '198.51.100.4', USER_TOKEN, { headers: { origin: 'https://evil.example.net' } });
    expect(read.headers['access-control-allow-origin']).toBeUndefined();
    // `*` (or a dev origin) in CORS_ORIGINS: production refuses to start.
    const v = await runCli(['validate', '--production', 'config/examples/004-external-auth-api.yaml'], { ...env(), CORS_ORIGINS: '*' });
    expect(v.code).toBe(1);
    expect(v.stdout).toContain('must not allow every origin ("*")');
    const start = await startGateway(policy(), { env: { ...env(), CORS_ORIGINS: 'https://app.example.com,http://localhost:5173' } }).then(() => 'started', (e: Error) => e.message);
    expect(start).toContain('development origin "http://localhost:5173"');
  });

  it('write operations audit-logged with user id; sensitive data kept out of logs; audit and error logs separate', async () => {
    const cookie = 'session=s3cr3t-cookie-value-77';
    await viaLb('/api/items?access_token=query-token-secret-91&page=2', '198.51.100.5', USER_TOKEN, { headers: { cookie } });
    const created = await viaLb('/api/items', '198.51.100.5', ADMIN_TOKEN, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: '{"name":"x"}' });
    expect(created.status).toBe(201);
    await viaLb('/api/items/9', '198.51.100.5', USER_TOKEN, { method: 'DELETE' });
    const lines = await waitFor(() => {
      if (!existsSync(auditFile)) return undefined;
      const l = auditLines(readFileSync(auditFile, 'utf8')).filter((a) => a.client_ip === '198.51.100.5');
      return l.length >= 2 ? l : undefined;
    });
    expect(lines.find((l) => l.method === 'POST')).toMatchObject({ action: 'write', subject: 'a-1', path: '/api/items', status: 201, outcome: 'succeeded' });
    expect(lines.find((l) => l.method === 'DELETE')).toMatchObject({ action: 'write', subject: 'u-42', status: 403, outcome: 'denied', reason: 'method_not_allowed_for_role' });
    expect(lines.some((l) => l.method === 'GET')).toBe(false); // reads are not write operations
    // The audit lines are only in the audit file; access lines only on stdout; the error log is stderr.
    // (The access log is written in batches, at most 100 ms behind.)
    await waitFor(() => jsonLines(gw.stdout()).some((l) => l.client_ip === '198.51.100.5' && l.method === 'DELETE'));
    const access = gw.stdout();
    const errors = gw.stderr();
    expect(auditLines(access + errors)).toEqual([]);
    expect(jsonLines(readFileSync(auditFile, 'utf8')).every((l) => typeof l.action === 'string')).toBe(true);
    expect(jsonLines(access).some((l) => l.client_ip === '198.51.100.5' && l.path === '/api/items')).toBe(true);
    for (const secret of [USER_TOKEN, ADMIN_TOKEN, USER_TOKEN.split('.')[2]!, 's3cr3t-cookie-value-77', 'query-token-secret-91']) {
      expect(access).not.toContain(secret);
      expect(errors).not.toContain(secret);
      expect(readFileSync(auditFile, 'utf8')).not.toContain(secret);
    }
  });

  it('/health monitored; LOG_LEVEL', async () => {
    const admin = client();
    try {
      expect((await admin.send(`${gw.admin}/healthz`)).status).toBe(200);
      expect((await admin.send(`${gw.admin}/readyz`)).status).toBe(200);
      const health = await lb.send(`${gw.url}/health`);
      expect(health.status).toBe(200); // the app's own /health, open, through the gateway
      expect(authCalls).toEqual([]);
      // LOG_LEVEL=WARNING (the app's production advice) hides info lines: a reload logs nothing...
      expect((await admin.send(`${gw.admin}/reload`, { method: 'POST' })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 300));
      expect(gw.stderr()).not.toContain('policy reloaded');
      // ...while LOG_LEVEL=INFO shows them.
      const verbose = await startGateway(policy(), { env: { ...env(), LOG_LEVEL: 'INFO' } });
      try {
        expect((await admin.send(`${verbose.admin}/reload`, { method: 'POST' })).status).toBe(200);
        await waitFor(() => verbose.stderr().includes('policy reloaded'));
      } finally {
        await verbose.stop();
      }
    } finally {
      await admin.close();
    }
  });

  it('deployment checklist', async () => {
    const open = await runCli(['validate', '--production', 'config/examples/004-external-auth-api.yaml'], { AUTH_SERVICE_URL: '', CORS_ORIGINS: '', REDIS_URL: '' });
    expect(open.code).toBe(1);
    expect(open.stdout).toMatch(/production checklist for .*004-external-auth-api\.yaml: 3 item\(s\) to fix before deploying/);
    for (const v of ['AUTH_SERVICE_URL', 'CORS_ORIGINS', 'REDIS_URL']) expect(open.stdout).toMatch(new RegExp(`\\[ \\] config/examples/004-external-auth-api\\.yaml:\\d+:\\d+: environment variable ${v} is not set`));
    const ready = await runCli(['validate', '--production', 'config/examples/004-external-auth-api.yaml'], env());
    expect(ready.stdout).toContain('production checklist: nothing missing, ready to deploy');
    expect(ready.code).toBe(0);
  });
});
