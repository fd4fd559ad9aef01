// API keys end to end: a real gateway process with a key file made by `portcullis secrets generate
// --api-key`, a real upstream and the shared Redis (own key prefix). Valid, unknown, missing and
// ambiguous keys; roles for authorize; a key revoked by editing the file stops working without restart;
// a broken file keeps the last good set; a per-key rate limit counted in Redis.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, tempDir, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { redisCli } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

async function generate(subject: string, ...extra: string[]): Promise<{ key: string; entry: string }> {
  const r = await runCli(['secrets', 'generate', '--api-key', subject, ...extra]);
  expect(r.code, r.stderr).toBe(0);
  const key = /^API_KEY=(\S+)$/m.exec(r.stdout)![1]!;
  const entry = r.stdout.split('\n').find((l) => l.startsWith('  - {'))!;
  return { key, entry };
}

describe('API keys', () => {
  let upstream: RecordingUpstream;
  let gw: RunningGateway;
  let dir: string;
  let keysFile: string;
  let ci: { key: string; entry: string };
  let ciNext: { key: string; entry: string };
  let reader: { key: string; entry: string };
  let limited: { key: string; entry: string };
  const prefix = `test:apikey:${randomUUID().slice(0, 8)}:`;

  const get = (path: string, headers: Record<string, string> = {}) => fetch(gw.url + path, { headers });

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = tempDir();
    keysFile = join(dir, 'keys.yaml');
    ci = await generate('ci-bot', '--id', 'ci-1', '--role', 'deployer');
    ciNext = await generate('ci-bot', '--id', 'ci-2', '--role', 'deployer');
    reader = await generate('reporting', '--scope', 'reports:read');
    limited = await generate('partner', '--id', 'partner-1');
    // The generated line plus an own rate limit for the partner's key.
    const limitedEntry = limited.entry.replace(' }', ', rate_limit: { limit: 2, window: 1h } }');
    writeFileSync(keysFile, `keys:\n${ci.entry}\n${ciNext.entry}\n${reader.entry}\n${limitedEntry}\n`);
    gw = await startGateway(`
version: 1
listeners:
  - address: 127.0.0.1:0
admin: { address: 127.0.0.1:0 }
upstreams:
  app: { url: "${upstream.url}" }
auth:
  default: keys
  providers:
    keys:
      api_key:
        keys_file: ${keysFile}
        reload_interval: 100ms
        subject_header: X-Subject
    keys_q:
      api_key: { keys_file: ${keysFile}, reload_interval: 100ms, query: api_key }
rate_limits:
  store: { redis: "redis://127.0.0.1:6379", key_prefix: "${prefix}" }
  per_key: { key: credential, limit: 100, window: 1h }
routes:
  - name: deploy
    match: { path_prefix: /deploy }
    upstream: app
    authorize: { roles_any: [deployer] }
  - name: reports
    match: { path_prefix: /reports }
    upstream: app
    authorize: { scopes_any: ["reports:read"] }
  - name: partner
    match: { path_prefix: /partner }
    upstream: app
    rate_limit: per_key
  - name: query
    match: { path_prefix: /q }
    upstream: app
    auth: keys_q
`, { dir });
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
  });

  it('lets a valid key in with its subject, and never forwards the key', async () => {
    const r = await get('/deploy/now', { 'x-api-key': ci.key, 'x-subject': 'forged' });
    expect(r.status).toBe(200);
    const seen = upstream.received.at(-1)!;
    expect(seen.headers['x-subject']).toBe('ci-bot');
    expect(seen.headers['x-api-key']).toBeUndefined();
    expect(JSON.stringify(seen.headers)).not.toContain(ci.key);
  });

  it('refuses a missing, unknown or ambiguous key with a precise reason', async () => {
    const missing = await get('/deploy/now');
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { reason: string }).reason).toBe('api_key_missing');
    expect(missing.headers.get('www-authenticate')).toBe('ApiKey realm="keys", header="X-API-Key"');
    const unknown = await get('/deploy/now', { 'x-api-key': 'pcak_' + 'x'.repeat(43) });
    expect(unknown.status).toBe(401);
    const body = await unknown.text();
    expect(JSON.parse(body).reason).toBe('api_key_invalid');
    expect(body).not.toContain('xxxx');
    const both = await get(`/q/x?api_key=${ciNext.key}`, { 'x-api-key': ci.key });
    expect(both.status).toBe(400);
    expect(((await both.json()) as { reason: string }).reason).toBe('api_key_ambiguous');
  });

  it('gives each key its roles and scopes for authorize', async () => {
    expect((await get('/reports/q1', { 'x-api-key': reader.key })).status).toBe(200);
    const r = await get('/deploy/now', { 'x-api-key': reader.key });
    expect(r.status).toBe(403);
    expect(((await r.json()) as { reason: string }).reason).toBe('role_missing');
    expect((await get('/reports/q1', { 'x-api-key': ci.key })).status).toBe(403);
  });

  it('accepts the key in the query only where enabled, and removes it from the query sent upstream', async () => {
    expect((await get(`/deploy/now?api_key=${ci.key}`)).status).toBe(401);
    const r = await get(`/q/x?a=1&api_key=${ci.key}`);
    expect(r.status).toBe(200);
    expect(upstream.received.at(-1)!.url).toBe('/q/x?a=1');
  });

  it('counts a key with its own rate limit at that rate, in Redis', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await get('/partner/data', { 'x-api-key': limited.key })).status);
    expect(statuses).toEqual([200, 200, 429]);
    // Another key on the same limit has the limit's own rate.
    for (let i = 0; i < 3; i++) expect((await get('/partner/data', { 'x-api-key': reader.key })).status).toBe(200);
    const keys = (await redisCli(6379, '--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean);
    expect(keys).toHaveLength(2); // one bucket per key, in Redis
    for (const k of keys) expect(k).not.toContain(limited.key);
    await redisCli(6379, 'del', ...keys);
  });

  it('stops a key removed from the file without restart; a broken file keeps the last good keys', async () => {
    expect((await get('/deploy/now', { 'x-api-key': ci.key })).status).toBe(200);
    // Rotation: ci-1 revoked, ci-2 (same subject) stays.
    writeFileSync(keysFile, `keys:\n${ciNext.entry}\n${reader.entry}\n`);
    await waitFor(async () => (await get('/deploy/now', { 'x-api-key': ci.key })).status === 401, 10_000);
    expect((await get('/deploy/now', { 'x-api-key': ciNext.key })).status).toBe(200);
    // A broken file: logged with the reason, the previous keys stay in force.
    writeFileSync(keysFile, 'keys:\n  - { sha256: nothex, subject: x }\n');
    await waitFor(() => gw.stderr().includes('API key file reload failed'), 10_000);
    expect(gw.stderr()).toContain('sha256');
    expect((await get('/deploy/now', { 'x-api-key': ciNext.key })).status).toBe(200);
    expect((await get('/deploy/now', { 'x-api-key': ci.key })).status).toBe(401);
    const all = gw.stdout() + gw.stderr();
    for (const k of [ci.key, ciNext.key, reader.key, limited.key]) expect(all).not.toContain(k);
  });
});
