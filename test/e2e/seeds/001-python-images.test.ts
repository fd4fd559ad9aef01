// App 001 (Python API with bcrypt, Postgres and image uploads) behind the real gateway running the shipped
// policy config/examples/001-python-images.yaml in production mode behind a "TLS proxy" (the test client on
// 127.0.0.1, the policy's trusted proxy), with real Redis (127.0.0.1:6379, a key prefix of its own) and
// headless Chromium for the frontend (served as http://app.example.test, mapped to 127.0.0.1).
// One test per row of the app's table in ../shared/seeds/README.md.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli, startGateway, type RunningGateway } from '../../helpers/gateway.ts';
import { rawRequest, reasonOf, statusOf } from '../../helpers/raw.ts';
import { client, examplePolicy, multipart, PNG } from '../../helpers/seeds.ts';
import { startUpstream, type RecordingUpstream } from '../../helpers/upstream.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SECRET_KEY = 'Jm3kQ9xV2pL7sR4tW8yB1nC6dF0gH5jK3mN7qS2uX9zA4cE8fI1oP6rT0vY5wZ3b'; // token_urlsafe(48)-like
const SECRET_KEY_PREVIOUS = 'aP4sD8fG2hJ6kL0zX3cV7bN1mQ5wE9rT4yU8iO2pA6sD0fG3hJ7kL1zX5cV9bN2m';

let app: RecordingUpstream;
let frontend: Server;
let frontendOrigin: string;
let gw: RunningGateway;
let http: ReturnType<typeof client>;
const prefix = `api001:rl:test-${randomUUID()}:`;

function env(): Record<string, string> {
  return { SECRET_KEY, SECRET_KEY_PREVIOUS, CORS_ORIGINS: frontendOrigin, REDIS_URL: 'redis://127.0.0.1:6379' };
}

function policy(): string {
  return examplePolicy('001-python-images', {
    '0.0.0.0:8080': '127.0.0.1:0',
    '10.0.0.0/8': '127.0.0.1/32', // the TLS proxy
    '127.0.0.1:9901': '127.0.0.1:0',
    'http://127.0.0.1:8000': app.url,
    'api001:rl:': prefix,
  });
}

async function token(claims: Record<string, unknown>, o: { kid?: string; secret?: string; ttl?: string | null; alg?: string; iat?: boolean } = {}): Promise<string> {
  let j = new SignJWT(claims).setProtectedHeader({ alg: o.alg ?? 'HS256', kid: o.kid ?? 'current' });
  if (o.iat !== false) j = j.setIssuedAt();
  if (o.ttl !== null) j = j.setExpirationTime(o.ttl ?? '15m');
  return j.sign(Buffer.from(o.secret ?? SECRET_KEY));
}

const as = (t: string) => ({ authorization: `Bearer ${t}` });

beforeAll(async () => {
  app = await startUpstream();
  app.handler = (req, res, body) => {
    const json = (status: number, v: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(v));
    };
    if (req.url === '/api/auth/login') return json(401, { detail: 'Incorrect username or password' }); // bcrypt says no
    if (req.url === '/api/images' && req.method === 'POST') return json(201, { id: 7, bytes: body.length });
    json(200, { ok: true, user: req.headers['x-user-id'] ?? null });
  };
  frontend = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>frontend</title><p>frontend</p>');
  });
  await new Promise<void>((r) => frontend.listen(0, '127.0.0.1', () => r()));
  frontendOrigin = `http://app.example.test:${(frontend.address() as AddressInfo).port}`;
  gw = await startGateway(policy(), { env: env() });
  http = client();
});

afterAll(async () => {
  await http?.close();
  await gw?.stop();
  await app?.close();
  frontend?.closeAllConnections();
  await new Promise((r) => frontend?.close(() => r(undefined)));
});

beforeEach(() => {
  app.received.length = 0;
});

describe('001: Python API with bcrypt, Postgres and image uploads', () => {
  it('the shipped policy passes validate --production with the production environment', async () => {
    const r = await runCli(['validate', '--production', 'config/examples/001-python-images.yaml'], { ...env(), CORS_ORIGINS: 'https://app.example.com' });
    expect(r.stdout).toContain('production checklist: nothing missing');
    expect(r.code).toBe(0);
  });

  it('verify every token server-side with SECRET_KEY', async () => {
    const url = `${gw.url}/api/images/7`;
    const reason = async (headers: Record<string, string>) => (await http.send(url, { headers })).reason;
    expect(await reason({})).toBe('token_missing');
    expect(await reason(as(await token({ sub: '42' }, { ttl: null })))).toBe('token_claim_missing'); // exp required
    expect(await reason(as(await token({ sub: '42' }, { alg: 'HS512' })))).toBe('token_algorithm_invalid'); // pinned to HS256
    expect(await reason(as(await token({ sub: '42' }, { secret: 'x'.repeat(64) })))).toBe('token_signature_invalid');
    const good = await token({ sub: '42' });
    const [h, , s] = good.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ sub: '1', iat: 1, exp: 9999999999 })).toString('base64url')}.${s}`;
    expect(await reason(as(tampered))).toBe('token_signature_invalid');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"1","exp":9999999999}').toString('base64url')}.`;
    expect((await http.send(url, { headers: as(none) })).status).toBe(401);
    expect(await reason(as(await token({ sub: '42' }, { ttl: '-5m' })))).toBe('token_expired');
    expect(app.received).toEqual([]);
    // A valid token: the app gets the verified subject, never a client's own X-User-Id.
    const ok = await http.send(url, { headers: { ...as(good), 'x-user-id': '1' } });
    expect(ok.status).toBe(200);
    expect(app.received.map((r) => r.headers['x-user-id'])).toEqual(['42']);
  });

  it('7-day tokens are too long; prefer shorter plus refresh', async () => {
    const week = await http.send(`${gw.url}/api/me`, { headers: as(await token({ sub: '42' }, { ttl: '7d' })) });
    expect([week.status, week.reason]).toEqual([401, 'token_lifetime_too_long']);
    expect(week.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token", error_description="token_lifetime_too_long"');
    expect((await http.send(`${gw.url}/api/me`, { headers: as(await token({ sub: '42' }, { ttl: '1h' })) })).status).toBe(200);
    // Without iat the lifetime cannot be judged: refused too.
    expect((await http.send(`${gw.url}/api/me`, { headers: as(await token({ sub: '42' }, { iat: false })) })).status).toBe(401);
    // The refresh endpoint (the app's refresh cookie) needs no access token.
    expect((await http.send(`${gw.url}/api/auth/refresh`, { method: 'POST', headers: { 'x-forwarded-for': '198.51.100.77' } })).status).toBe(200);
  });

  it('rotating SECRET_KEY forces re-login', async () => {
    const oldToken = await token({ sub: 'old-session' }, { kid: 'previous', secret: SECRET_KEY_PREVIOUS });
    const newToken = await token({ sub: 'new-session' });
    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync', '--host-resolver-rules=MAP *.example.test 127.0.0.1'],
    });
    const api = gw.url.replace('127.0.0.1', 'api.example.test');
    try {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${frontendOrigin}/`);
      // What the frontend does on every call: a 401 whose WWW-Authenticate says invalid_token means "sign in again".
      const call = (t: string) => page.evaluate(async ([url, tok]) => {
        const r = await fetch(url!, { headers: { authorization: `Bearer ${tok}` } });
        const challenge = r.headers.get('www-authenticate');
        return { status: r.status, challenge, action: r.status === 401 && /error="invalid_token"/.test(challenge ?? '') ? 'relogin' : 'ok' };
      }, [`${api}/api/me`, t]);
      // During the overlap both keys are accepted.
      expect(await call(oldToken)).toMatchObject({ status: 200, action: 'ok' });
      expect(await call(newToken)).toMatchObject({ status: 200, action: 'ok' });
      // The rotation is finished: the previous key's line is deleted and the policy reloaded.
      writeFileSync(gw.policyFile, readFileSync(gw.policyFile, 'utf8').split('\n').filter((l) => !l.includes('kid: previous')).join('\n'));
      expect((await http.send(`${gw.admin}/reload`, { method: 'POST' })).status).toBe(200);
      expect(await call(oldToken)).toEqual({ status: 401, challenge: 'Bearer realm="api", error="invalid_token", error_description="token_key_unknown"', action: 'relogin' });
      expect(await call(newToken)).toMatchObject({ status: 200, action: 'ok' });
    } finally {
      await browser.close();
      writeFileSync(gw.policyFile, policy());
      await http.send(`${gw.admin}/reload`, { method: 'POST' });
    }
  }, 30_000);

  it('CORS open to localhost:5173 and :3000 in dev; restrict in prod', async () => {
    const dev = 'http://localhost:5173,http://localhost:3000';
    // Production refuses the development list (and `*`), naming each origin.
    const refused = await startGateway(policy(), { env: { ...env(), CORS_ORIGINS: dev } }).then(() => 'started', (e: Error) => e.message);
    expect(refused).toContain('development origin "http://localhost:5173"');
    expect(refused).toContain('development origin "http://localhost:3000"');
    const star = await startGateway(policy(), { env: { ...env(), CORS_ORIGINS: '*' } }).then(() => 'started', (e: Error) => e.message);
    expect(star).toContain('must not allow every origin ("*")');
    // The production gateway answers only its production origin.
    const preflight = (g: RunningGateway, origin: string) => http.send(`${g.url}/api/images`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' } });
    expect((await preflight(gw, frontendOrigin)).headers['access-control-allow-origin']).toBe(frontendOrigin);
    expect((await preflight(gw, 'http://localhost:5173')).reason).toBe('origin_not_allowed');
    // The same policy in development mode takes the development list, and says loudly that it is insecure.
    const devGw = await startGateway(policy().replace('mode: production', 'mode: development'), { env: { ...env(), CORS_ORIGINS: dev } });
    try {
      for (const origin of dev.split(',')) expect((await preflight(devGw, origin)).headers['access-control-allow-origin']).toBe(origin);
      expect((await preflight(devGw, frontendOrigin)).reason).toBe('origin_not_allowed');
      expect(devGw.stderr()).toContain('DEVELOPMENT MODE');
    } finally {
      await devGw.stop();
    }
  });

  it('rate-limit brute force', async () => {
    const login = (ip: string, body: string, headers: Record<string, string> = {}) => http.send(`${gw.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'x-forwarded-for': ip, 'content-type': 'application/json', ...headers },
      body,
    });
    const attempt = (username: string, password = 'guess') => JSON.stringify({ username, password });
    // One address trying many accounts: 5 a minute.
    const run = randomUUID().slice(0, 8);
    const fromOne: number[] = [];
    for (let i = 0; i < 7; i++) fromOne.push((await login('203.0.113.50', attempt(`user-${run}-${i}`))).status);
    expect(fromOne).toEqual([401, 401, 401, 401, 401, 429, 429]);
    // Many addresses trying one account: 5 a minute for that account, read from the login body itself, so
    // no header the client sends (the old X-Username) can move the attempt to another bucket.
    const victim = `victim-${run}`;
    const onOne: number[] = [];
    for (let i = 0; i < 7; i++) onOne.push((await login(`198.51.100.${10 + i}`, attempt(victim, `guess-${i}`), { 'x-username': `decoy-${i}` })).status);
    expect(onOne).toEqual([401, 401, 401, 401, 401, 429, 429]);
    const limited = await login('198.51.100.99', attempt(victim));
    expect(limited.reason).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // Two usernames in one body: which one the app reads is not the gateway's guess.
    const twice = await login('198.51.100.98', `{"username":"someone-${run}","password":"x","username":"${victim}"}`);
    expect([twice.status, twice.reason]).toEqual([400, 'ambiguous_body_field']);
    // A form post of the same login is refused (the app takes JSON), so it cannot fall back to per-address.
    const asForm = await login('198.51.100.97', `username=${victim}&password=x`, { 'content-type': 'application/x-www-form-urlencoded' });
    expect([asForm.status, asForm.reason]).toEqual([415, 'unsupported_media_type']);
    expect(app.received.length).toBe(10); // refused attempts never reached bcrypt
    expect(app.received.filter((r) => r.url === '/api/auth/login').map((r) => JSON.parse(r.body.toString()).username)).toEqual(
      [...Array.from({ length: 5 }, (_, i) => `user-${run}-${i}`), ...Array.from({ length: 5 }, () => victim)]);
  });

  it('uploads: MIME type and size limits', async () => {
    const t = as(await token({ sub: 'uploader' }));
    const upload = (body: Buffer, contentType: string) => http.send(`${gw.url}/api/images`, { method: 'POST', headers: { ...t, 'content-type': contentType }, body });
    // For bodies the gateway refuses while they are still being sent: the answer counts, not the EPIPE after it.
    const uploadBig = (body: Buffer, contentType: string) => new Promise<{ status: number; reason?: string }>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/api/images`, { method: 'POST', headers: { ...t, 'content-type': contentType, 'content-length': body.length } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: (JSON.parse(text || '{}') as { reason?: string }).reason }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0 }));
      });
      req.on('error', (e) => setTimeout(() => reject(e), 500));
      req.end(body);
    });
    const png = multipart('cat.png', 'image/png', PNG);
    expect((await upload(png.body, png.contentType)).status).toBe(201);
    const json = await upload(Buffer.from('{"image":"iVBORw0KGgo="}'), 'application/json');
    expect([json.status, json.reason]).toEqual([415, 'unsupported_media_type']);
    const html = multipart('x.html', 'text/html', Buffer.from('<script>alert(1)</script>'));
    expect((await upload(html.body, html.contentType)).reason).toBe('part_type_not_allowed');
    const exe = multipart('cat.png', 'image/png', Buffer.concat([Buffer.from('MZ'), Buffer.alloc(200)]));
    expect((await upload(exe.body, exe.contentType)).reason).toBe('part_content_mismatch');
    const fake = multipart('cat.jpg', 'image/jpeg', PNG);
    expect((await upload(fake.body, fake.contentType)).reason).toBe('part_content_mismatch');
    const big = multipart('big.png', 'image/png', Buffer.concat([PNG, Buffer.alloc(6 * 1024 * 1024)]));
    expect(await uploadBig(big.body, big.contentType)).toEqual({ status: 413, reason: 'part_too_large' }); // one part over 5 MiB
    expect(app.received.filter((r) => r.url === '/api/images').length).toBe(1);

    // Over 10 MiB: a declared length is refused before any of the body is read or forwarded...
    const head = await rawRequest(gw.url, `POST /api/images HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: ${t.authorization}\r\nContent-Type: ${png.contentType}\r\nContent-Length: ${11 * 1024 * 1024}\r\n\r\n`, 800);
    expect([statusOf(head), reasonOf(head)]).toEqual([413, 'body_too_large']);
    // ...and a chunked body as soon as it passes the limit (the app never gets a whole one).
    const streamed = await new Promise<string>((resolve) => {
      const { hostname, port } = new URL(gw.url);
      const socket = connect({ host: hostname, port: Number(port) });
      let answer = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => {
        answer += d;
        if (answer.includes('\r\n\r\n')) {
          resolve(answer);
          socket.destroy();
        }
      });
      socket.on('error', () => resolve(answer));
      socket.on('close', () => resolve(answer));
      socket.write(`POST /api/images HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: ${t.authorization}\r\nContent-Type: ${png.contentType}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const head = png.body.subarray(0, png.body.length - 30);
      socket.write(`${head.length.toString(16)}\r\n`);
      socket.write(head);
      socket.write('\r\n');
      const chunk = Buffer.alloc(256 * 1024);
      let sent = 0;
      const pump = () => {
        while (!socket.destroyed && sent < 12 * 1024 * 1024) {
          sent += chunk.length;
          socket.write(`${chunk.length.toString(16)}\r\n`);
          const ok = socket.write(Buffer.concat([chunk, Buffer.from('\r\n')]));
          if (!ok) return void socket.once('drain', pump);
        }
      };
      pump();
    });
    expect(statusOf(streamed)).toBe(413);
    expect(app.received.filter((r) => r.url === '/api/images').every((r) => r.body.length <= 10 * 1024 * 1024)).toBe(true);
    expect(app.received.filter((r) => r.url === '/api/images' && r.body.length > 1024 * 1024)).toEqual([]);
  });
});
