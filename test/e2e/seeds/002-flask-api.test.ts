// App 002 (a Flask API with flask-jwt-extended) behind the real gateway running the shipped policy
// config/examples/002-flask-api.yaml with ENVIRONMENT=production, behind a "TLS proxy" (the test client on
// 127.0.0.1, the policy's trusted proxy), with real Redis (127.0.0.1:6379, a key prefix of its own) and a
// real OTLP receiver for traces. One test per row of the app's table in ../shared/seeds/README.md.
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli, startGateway, waitFor, type RunningGateway } from '../../helpers/gateway.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../../helpers/otlp.ts';
import { expectWithinLimit, runUntilLimited } from '../../helpers/ratelimit.ts';
import { client, examplePolicy, jsonLines } from '../../helpers/seeds.ts';
import { startUpstream, type RecordingUpstream } from '../../helpers/upstream.ts';

const JWT_SECRET_KEY = '9c4e1a7f3d8b2e6c0a5f9d3b7e1c4a8f2d6b0e5a9c3f7d1b4e8a2c6f0d3b7e1a';
const FRONTEND = 'https://todo.example.com';

let app: RecordingUpstream;
let otlp: OtlpReceiver;
let gw: RunningGateway;
let http: ReturnType<typeof client>;
const prefix = `flask:rl:test-${randomUUID()}:`;

/** The app's production environment, with a custom JWT_HEADER_NAME / JWT_HEADER_TYPE. */
function env(): Record<string, string> {
  return {
    ENVIRONMENT: 'production',
    JWT_SECRET_KEY,
    JWT_ACCESS_TOKEN_EXPIRES: '3600',
    JWT_HEADER_NAME: 'X-Auth',
    JWT_HEADER_TYPE: 'JWT',
    CORS_ORIGINS: FRONTEND,
    REDIS_URL: 'redis://127.0.0.1:6379',
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
}

function policy(): string {
  return examplePolicy('002-flask-api', {
    '0.0.0.0:8080': '127.0.0.1:0',
    '10.0.0.0/8': '127.0.0.1/32', // the TLS proxy
    '127.0.0.1:9901': '127.0.0.1:0',
    'http://127.0.0.1:5000': app.url,
    'flask:rl:': prefix,
  });
}

function token(claims: Record<string, unknown>, ttl = '15m'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(ttl).sign(Buffer.from(JWT_SECRET_KEY));
}

const xauth = (t: string) => ({ 'x-auth': `JWT ${t}` });

beforeAll(async () => {
  [app, otlp] = await Promise.all([startUpstream(), startOtlpReceiver()]);
  app.handler = (req, res) => {
    res.writeHead(req.url === '/api/auth/login' ? 401 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, request_id: req.headers['x-request-id'] ?? null }));
  };
  gw = await startGateway(policy(), { env: env() });
  http = client();
});

afterAll(async () => {
  await http?.close();
  await gw?.stop();
  await Promise.all([app?.close(), otlp?.close()]);
});

beforeEach(() => {
  app.received.length = 0;
});

describe('002: Flask API', () => {
  it('the shipped policy passes validate --production with ENVIRONMENT=production', async () => {
    const r = await runCli(['validate', '--production', 'config/examples/002-flask-api.yaml'], env());
    expect(r.stdout).toContain('production checklist: nothing missing');
    expect(r.code).toBe(0);
  });

  it('ENVIRONMENT=production refuses to start without its secrets; development has insecure defaults', async () => {
    const insecure = { JWT_SECRET_KEY: 'dev-secret-key', CORS_ORIGINS: 'http://localhost:3000' };
    // Production: refuses, naming every problem at once.
    const missing = await startGateway(policy(), { env: { ...env(), JWT_SECRET_KEY: '', CORS_ORIGINS: 'http://localhost:3000' } }).then(() => 'started', (e: Error) => e.message);
    expect(missing).toMatch(/gateway exited with 1/);
    expect(missing).toContain('environment variable JWT_SECRET_KEY is not set (referenced as ${env:JWT_SECRET_KEY})');
    expect(missing).toContain('development origin "http://localhost:3000"');
    const weak = await startGateway(policy(), { env: { ...env(), ...insecure } }).then(() => 'started', (e: Error) => e.message);
    expect(weak).toContain('HMAC secret has 112 bits, at least 256 are required');
    expect(weak).toContain('development origin "http://localhost:3000"');
    expect(weak).not.toContain('dev-secret-key'); // the secret itself is never printed
    // Development: the same insecure values start, and the error log says loudly that it is insecure.
    const dev = await startGateway(policy(), { env: { ...env(), ...insecure, ENVIRONMENT: 'development' } });
    try {
      const warn = await waitFor(() => jsonLines(dev.stderr()).find((l) => String(l.msg).startsWith('DEVELOPMENT MODE: insecure settings are allowed')));
      expect(warn.level).toBe(40);
      expect((await http.send(`${dev.url}/health`)).status).toBe(200);
    } finally {
      await dev.stop();
    }
    // validate --production says what a development environment still lacks.
    const v = await runCli(['validate', '--production', 'config/examples/002-flask-api.yaml'], { ...env(), ENVIRONMENT: 'development' });
    expect(v.code).toBe(1);
    expect(v.stdout).toContain('the policy says `mode: development`');
  });

  it('JWT_ACCESS_TOKEN_EXPIRES 3600, JWT_TOKEN_LOCATION headers or cookies, JWT_HEADER_NAME, JWT_HEADER_TYPE', async () => {
    const t = await token({ sub: '7' });
    const get = (headers: Record<string, string>) => http.send(`${gw.url}/api/todos`, { headers });
    // JWT_HEADER_NAME=X-Auth, JWT_HEADER_TYPE=JWT: the configured header and scheme.
    expect((await get(xauth(t))).status).toBe(200);
    expect((await get({ authorization: `Bearer ${t}` })).reason).toBe('token_missing'); // not a configured source
    expect((await get({ 'x-auth': `Bearer ${t}` })).status).toBe(401); // wrong scheme
    // JWT_TOKEN_LOCATION cookies: flask-jwt-extended's access_token_cookie.
    expect((await get({ cookie: `access_token_cookie=${t}` })).status).toBe(200);
    // Both places, same token: fine; different tokens: refused, never a silent pick.
    expect((await get({ ...xauth(t), cookie: `access_token_cookie=${t}` })).status).toBe(200);
    const other = await token({ sub: '8' });
    expect((await get({ ...xauth(t), cookie: `access_token_cookie=${other}` })).reason).toBe('token_ambiguous');
    // JWT_ACCESS_TOKEN_EXPIRES=3600: a token of an hour passes, a longer one does not.
    expect((await get(xauth(await token({ sub: '7' }, '1h')))).status).toBe(200);
    expect((await get(xauth(await token({ sub: '7' }, '2h')))).reason).toBe('token_lifetime_too_long');
    expect(app.received.map((r) => r.headers['x-user-id'])).toEqual(['7', '7', '7', '7']);
  });

  it('every request gets X-Request-ID, client\'s kept or one generated', async () => {
    const t = await token({ sub: 'rid-user' });
    // The client's id: kept, forwarded, returned.
    const mine = await http.send(`${gw.url}/api/todos`, { headers: { ...xauth(t), 'x-request-id': 'client-req-0042' } });
    expect(mine.headers['x-request-id']).toBe('client-req-0042');
    expect(app.received[0]!.headers['x-request-id']).toBe('client-req-0042');
    // None sent: one generated, the same at the app and in the answer.
    const gen = await http.send(`${gw.url}/api/todos`, { headers: xauth(t) });
    const id = String(gen.headers['x-request-id']);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(app.received[1]!.headers['x-request-id']).toBe(id);
    // A malformed one is replaced; a denied request carries its id in the answer body too.
    const bad = await http.send(`${gw.url}/api/todos`, { headers: { ...xauth(t), 'x-request-id': 'has spaces "and quotes"' } });
    expect(String(bad.headers['x-request-id'])).toMatch(/^[0-9a-f-]{36}$/);
    const denied = await http.send(`${gw.url}/api/todos`, { headers: { 'x-request-id': 'client-req-0043' } });
    expect([denied.status, denied.json.request_id, denied.headers['x-request-id']]).toEqual([401, 'client-req-0043', 'client-req-0043']);
    // In the logs and the traces.
    const access = await waitFor(() => {
      const lines = jsonLines(gw.stdout());
      const a = lines.find((l) => l.request_id === 'client-req-0042');
      const b = lines.find((l) => l.request_id === id);
      const c = lines.find((l) => l.request_id === 'client-req-0043');
      return a && b && c ? { a, b, c } : undefined;
    });
    expect(access.a).toMatchObject({ path: '/api/todos', status: 200, subject: 'rid-user' });
    expect(access.c).toMatchObject({ status: 401, deny_reason: 'token_missing' });
    const spans = await otlp.waitFor((s) => ['client-req-0042', id, 'client-req-0043'].every((r) => s.some((x) => x.attributes['portcullis.request_id'] === r)), 10_000);
    const span = spans.find((x) => x.attributes['portcullis.request_id'] === 'client-req-0042')!;
    expect(span.attributes['http.route']).toBe('api');
    expect(access.a.trace_id).toBe(span.traceId);
  });

  it('rate limiting, CORS', async () => {
    // CORS for the frontend domain only.
    const preflight = (origin: string) => http.send(`${gw.url}/api/todos`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-request-id, content-type' } });
    const ok = await preflight(FRONTEND);
    expect([ok.status, ok.headers['access-control-allow-origin'], ok.headers['access-control-allow-credentials']]).toEqual([204, FRONTEND, 'true']);
    expect((await preflight('https://evil.example.net')).reason).toBe('origin_not_allowed');
    // Login attempts: 10 a minute per address; then 429 with Retry-After, before the app sees them. The
    // bounds hold on a slow machine (test/helpers/ratelimit.ts): one more attempt per 6 s elapsed, and a
    // request Redis did not answer in time counted by the local fallback bucket instead.
    const login = () => http.send(`${gw.url}/api/auth/login`, { method: 'POST', headers: { 'x-forwarded-for': '203.0.113.20', 'content-type': 'application/json' }, body: '{"username":"a","password":"b"}' });
    const logins = await runUntilLimited(gw, login, { route: 'login', limit: 'login', perWindow: 10, windowMs: 60_000, concurrency: 1, limitedWanted: 3 });
    const statuses = logins.answers.map((r) => r.status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    const attempts = expectWithinLimit(logins, 401);
    const limited = logins.answers.at(-1)!;
    expect(limited.reason).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited.headers['ratelimit-policy']).toBe('"login";q=10;w=60, "per_ip";q=100;w=60');
    expect(app.received.length).toBe(attempts);
    // The API: 100 a minute per address.
    const t = xauth(await token({ sub: 'busy' }));
    const apiCall = () => http.send(`${gw.url}/api/todos`, { headers: { ...t, 'x-forwarded-for': '203.0.113.21' } });
    const api = await runUntilLimited(gw, apiCall, { route: 'api', limit: 'per_ip', perWindow: 100, windowMs: 60_000, concurrency: 10, limitedWanted: 8 });
    const passed = expectWithinLimit(api);
    expect(passed).toBeGreaterThanOrEqual(100);
    expect(app.received.length).toBe(attempts + passed);
  });
});
