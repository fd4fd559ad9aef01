// Logs of a full gateway run: access, audit and error logs on separate streams with the promised fields,
// LOG_LEVEL, flushing on shutdown, and no secret or token anywhere: every byte the process wrote (stdout,
// stderr, log files) and every span it exported is searched for the secrets and tokens the run used.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../src/filters/api-key.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { parseLogLevel, redactCredentials } from '../../src/observability/logs.ts';
import { RequestTelemetry } from '../../src/observability/request-telemetry.ts';
import { RequestContext } from '../../src/contract/context.ts';
import { ROOT, startGateway, tempDir, type RunningGateway } from '../helpers/gateway.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const UPSTREAM_PASSWORD = 'up-pass-7f3c9a1e2b';
const API_KEY = 'api-key-51d0c8e4aa93';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU';
const COOKIE = 'sess-cookie-0c1d2e3f4a5b';
const SET_COOKIE = 'set-cookie-value-99aa88bb';
const QUERY_TOKEN = 'query-token-a1b2c3d4e5';
const QUERY_KEY = 'query-apikey-f6e5d4c3';
const BASIC = Buffer.from('proxyuser:proxy-pass-31337').toString('base64');
const CSRF = 'csrf-token-8d7c6b5a4f';
// API keys: a valid one (its hash is in the policy), an unknown one, one sent in a custom query parameter.
const GATEWAY_KEY = 'pcak_machine-key-4e1f2a3b5c6d7e8f';
const WRONG_KEY = 'pcak_wrong-key-9a8b7c6d5e4f';
const SECRETS = [GATEWAY_KEY, WRONG_KEY, UPSTREAM_PASSWORD, API_KEY, JWT, JWT.split('.')[1]!, JWT.split('.')[2]!, COOKIE, SET_COOKIE, QUERY_TOKEN, QUERY_KEY, BASIC, 'proxy-pass-31337', CSRF];

describe('redaction helpers', () => {
  it('masks JWTs, credentials and token query parameters in a line', () => {
    const line = JSON.stringify({ msg: `GET /x?a=1&access_token=${QUERY_TOKEN}&api_key=${QUERY_KEY} Bearer ${JWT} Basic ${BASIC}` });
    const out = redactCredentials(line);
    for (const s of [QUERY_TOKEN, QUERY_KEY, JWT, BASIC]) expect(out).not.toContain(s);
    expect(out).toContain('a=1');
    expect(redactCredentials('{"msg":"plain line"}')).toBe('{"msg":"plain line"}');
  });

  it('reads LOG_LEVEL as operators write it', () => {
    expect(parseLogLevel('WARNING')).toBe('warn');
    expect(parseLogLevel('Error')).toBe('error');
    expect(parseLogLevel('critical')).toBe('fatal');
    expect(parseLogLevel('debug')).toBe('debug');
    expect(parseLogLevel('loud')).toBeUndefined();
  });
});

describe('a crash', () => {
  it('is written to the error log with secrets masked, flushed, exit 1', () => {
    const script = `
      import { createLoggers, logCrashes } from './src/observability/logs.ts';
      import { SecretRegistry } from './src/config/secrets.ts';
      const secrets = new SecretRegistry();
      secrets.add('${API_KEY}');
      const loggers = createLoggers({ level: 'info', access: 'off', audit: 'off', error: 'stderr' }, { current: secrets });
      logCrashes(loggers.error, () => loggers.flush());
      setTimeout(() => { throw new Error('connect failed for redis://:${API_KEY}@db:6379 with Bearer ${JWT}'); }, 10);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('"level":60');
    expect(r.stderr).toContain('uncaught exception');
    expect(r.stderr).toContain('connect failed for redis://:********@db:6379');
    expect(r.stderr + r.stdout).not.toContain(API_KEY);
    expect(r.stderr + r.stdout).not.toContain(JWT);
  });
});

describe('audit line', () => {
  it('says who did what with which outcome', () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const audit = pino(sink);
    const t = new RequestTelemetry(new Metrics({ defaultMetrics: false }), { enabled: false, write() {} }, audit);
    const ctx = new RequestContext('DELETE', '1.1', {}, '10.0.0.9', 'https', performance.now());
    ctx.id = 'req-1';
    ctx.path = '/api/orders/7';
    ctx.audit = 'write';
    ctx.subject = 'user-42';
    ctx.status = 403;
    ctx.deny = { filter: 'authorize', reason: 'role_missing' };
    t.onRequestEnd(ctx);
    expect(lines[0]).toMatchObject({ request_id: 'req-1', action: 'write', subject: 'user-42', method: 'DELETE', path: '/api/orders/7', status: 403, outcome: 'denied', reason: 'role_missing', client_ip: '10.0.0.9' });
  });
});

describe('a full run', () => {
  let upstream: RecordingUpstream;
  let receiver: OtlpReceiver;
  let gw: RunningGateway;
  let dir: string;
  let policyText: string;
  let all = '';
  const statuses: Record<string, number> = {};

  const apiKeySeen: string[] = [];
  async function send(name: string, path: string, init: RequestInit = {}): Promise<void> {
    const r = await fetch(gw.url + path, init);
    await r.text();
    statuses[name] = r.status;
    apiKeySeen.push(r.headers.get('x-api-key') ?? '');
  }

  beforeAll(async () => {
    upstream = await startUpstream();
    upstream.handler = (req, res) => {
      if (req.url?.startsWith('/api/boom')) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('failed');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': `sid=${SET_COOKIE}; Path=/; HttpOnly` });
      res.end('{"ok":true}');
    };
    receiver = await startOtlpReceiver();
    dir = tempDir();
    policyText = `
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
log:
  access: ${join(dir, 'access.log')}
  audit: ${join(dir, 'audit.log')}
  error: stderr
tracing: { endpoint: "${receiver.url}" }
audit: { write_methods: true }
auth:
  default: none
  providers:
    machines:
      api_key:
        query: k
        keys: [{ id: m1, sha256: ${hashApiKey(GATEWAY_KEY)}, subject: machine-1 }]
upstreams:
  app: { url: "http://svc:\${env:UPSTREAM_PASSWORD}@127.0.0.1:${upstream.port}" }
  gone: { url: "http://127.0.0.1:1", connect_timeout: 500ms }
routes:
  - name: login
    match: { path: /login }
    upstream: app
    audit: login
  - name: files
    match: { path_prefix: /files }
    upstream: app
    audit: [{ action: upload, methods: [POST] }, { action: download, methods: [GET] }]
  - name: api
    match: { path_prefix: /api }
    upstream: app
    response_headers: { add: { x-api-key: "\${env:API_KEY}" } }
  - name: gone
    match: { path: /gone }
    upstream: gone
  - name: machine
    match: { path_prefix: /machine }
    upstream: app
    auth: machines
    audit: machine_call
`;
    gw = await startGateway(policyText, { dir, env: { UPSTREAM_PASSWORD, API_KEY, LOG_LEVEL: 'WARNING', OTEL_BSP_SCHEDULE_DELAY: '100' } });

    const creds = { authorization: `Bearer ${JWT}`, cookie: `session=${COOKIE}`, 'proxy-authorization': `Basic ${BASIC}`, 'x-csrf-token': CSRF };
    await send('login', '/login', { method: 'POST', headers: creds, body: 'user=alice' });
    await send('read', `/api/items?access_token=${QUERY_TOKEN}&api_key=${QUERY_KEY}`, { headers: creds });
    await send('write', '/api/orders', { method: 'POST', headers: creds, body: '{}' });
    await send('delete', '/api/orders/7', { method: 'DELETE', headers: creds });
    await send('boom', '/api/boom', { method: 'PUT', headers: creds, body: '{}' });
    await send('upload', '/files/report.pdf', { method: 'POST', headers: creds, body: 'pdf' });
    await send('download', '/files/report.pdf', { headers: creds });
    await send('gone', `/gone?token=${QUERY_TOKEN}`, { headers: creds });
    await send('none', `/nowhere?access_token=${QUERY_TOKEN}`, { headers: creds });
    await send('key', '/machine/run', { method: 'POST', headers: { 'x-api-key': GATEWAY_KEY }, body: '{}' });
    await send('wrong_key', '/machine/run', { method: 'POST', headers: { 'x-api-key': WRONG_KEY }, body: '{}' });
    await send('query_key', `/machine/run?k=${GATEWAY_KEY}`);
    await send('wrong_query_key', `/machine/run?k=${WRONG_KEY}`);
    // A reload that fails with a secret inside the invalid value: the error names the place, not the secret.
    writeFileSync(gw.policyFile, policyText.replace('connect_timeout: 500ms', 'connect_timeout: "${env:API_KEY}"'));
    const reload = await fetch(`${gw.admin}/reload`, { method: 'POST' });
    all += await reload.text();
    expect(reload.status).toBe(422);
    await receiver.waitFor((s) => s.filter((x) => x.kind === 2).length >= 13);
    expect(await gw.stop()).toBe(0);
    all += gw.stdout() + gw.stderr() + readFileSync(join(dir, 'access.log'), 'utf8') + readFileSync(join(dir, 'audit.log'), 'utf8') + receiver.bodies.join('\n');
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    await receiver?.close();
  });

  it('never writes a secret or a token anywhere', () => {
    expect(statuses).toMatchObject({ login: 200, read: 200, write: 200, delete: 200, boom: 500, upload: 200, download: 200, gone: 502, none: 404, key: 200, wrong_key: 401, query_key: 200, wrong_query_key: 401 });
    expect(upstream.received.some((r) => r.headers.authorization === `Bearer ${JWT}`)).toBe(true); // the tokens were really used
    expect(apiKeySeen).toContain(API_KEY); // the secret was resolved and used
    expect(all).toContain('invalid duration'); // the failed reload said why...
    expect(all).toContain('********'); // ...and masked the value
    expect(all.length).toBeGreaterThan(1000);
    for (const s of SECRETS) expect(all, `output contains ${s}`).not.toContain(s);
  });

  it('writes one access line per request with the promised fields, flushed at shutdown', () => {
    const lines = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(13);
    const read = lines.find((l) => l.path === '/api/items')!;
    expect(read).toMatchObject({ log: 'access', method: 'GET', route: 'api', status: 200, upstream_status: 200, client_ip: '127.0.0.1' });
    expect(read.request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(read.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof read.duration_ms).toBe('number');
    expect(lines.find((l) => l.route === 'none')).toMatchObject({ status: 404, deny_reason: 'route_not_found', deny_filter: 'gateway' });
    expect(lines.find((l) => l.route === 'gone')).toMatchObject({ status: 502, deny_reason: 'upstream_unreachable' });
  });

  it('writes audit lines to their own stream: named actions and every write method', () => {
    const lines = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.map((l) => `${l.action} ${l.method} ${l.path} ${l.outcome}`).sort();
    expect(summary).toEqual([
      'login POST /login succeeded',
      'upload POST /files/report.pdf succeeded',
      'download GET /files/report.pdf succeeded',
      'write DELETE /api/orders/7 succeeded',
      'write POST /api/orders succeeded',
      'write PUT /api/boom failed',
      'machine_call POST /machine/run succeeded',
      'machine_call POST /machine/run denied',
      'machine_call GET /machine/run succeeded',
      'machine_call GET /machine/run denied',
    ].sort());
    // The API key's subject is the audited identity; the key itself is nowhere (see above).
    expect(lines.filter((l) => l.action === 'machine_call' && l.outcome === 'succeeded').map((l) => l.subject)).toEqual(['machine-1', 'machine-1']);
    expect(lines.find((l) => l.action === 'machine_call' && l.outcome === 'denied')).toMatchObject({ reason: 'api_key_invalid' });
    for (const l of lines) {
      expect(l).toMatchObject({ log: 'audit', client_ip: '127.0.0.1' });
      expect(l).toHaveProperty('subject');
      expect(l.request_id).toMatch(/^[0-9a-f-]{36}$/);
    }
    const access = readFileSync(join(dir, 'access.log'), 'utf8');
    expect(access).not.toContain('"log":"audit"');
  });

  it('keeps the error log separate, at the LOG_LEVEL given (WARNING)', () => {
    const err = gw.stderr();
    expect(err).toContain('upstream request failed');
    expect(err).toContain('policy reload failed');
    expect(err).toContain('"level":40'); // the development-mode warning
    expect(err).not.toContain('"level":30'); // info lines are below WARNING
    expect(err).not.toContain('"log":"access"');
    expect(err).not.toContain('"log":"audit"');
  });
});
