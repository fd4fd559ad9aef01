// A single Redis with TLS and a password, both taken from the store URL (rediss://:PASS@host:port?ca=).
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RedisStore, parseRedisUrl, type RedisTarget } from '../../src/ratelimit/redis.ts';
import { makeRate } from '../../src/contract/rate-limit.ts';
import { makeCerts, type TestCerts } from '../helpers/certs.ts';
import { freePort, sleep } from '../helpers/redis-server.ts';

let certs: TestCerts;
let port: number;
let proc: ChildProcess;

function store(url: string, events: string[] = [], timeoutMs = 1000) {
  return new RedisStore(parseRedisUrl(url) as RedisTarget, {
    connectTimeoutMs: timeoutMs,
    commandTimeoutMs: timeoutMs,
    probeMs: 100,
    onStateChange: (up, reason) => events.push(`${up ? 'up' : 'down'}:${reason}`),
  });
}

beforeAll(async () => {
  certs = makeCerts('localhost');
  port = await freePort();
  proc = spawn('redis-server', [
    '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no',
    '--requirepass', 'tls-pass-123',
  ], { stdio: 'ignore' });
  await sleep(300);
});

afterAll(() => {
  proc?.kill('SIGKILL');
});

it('connects with TLS (private CA) and the URL password, and counts', async () => {
  const s = store(`rediss://:tls-pass-123@127.0.0.1:${port}?ca=${encodeURIComponent(certs.ca)}`);
  await s.ready();
  expect(s.available).toBe(true);
  const rate = makeRate(2, 60_000);
  const r = await Promise.all([1, 2, 3].map(() => s.hit('{tls}', 1, Date.now(), rate)));
  expect(r.map((x) => x.allowed)).toEqual([true, true, false]);
  await s.close();
});

it('a wrong password or an untrusted certificate leaves the store down, never up', async () => {
  for (const url of [
    `rediss://:wrong@127.0.0.1:${port}?ca=${encodeURIComponent(certs.ca)}`,
    `rediss://:tls-pass-123@127.0.0.1:${port}`, // the test CA is not in the system store
    `redis://:tls-pass-123@127.0.0.1:${port}`, // plain text to a TLS port
  ]) {
    const events: string[] = [];
    const s = store(url, events, 300);
    await s.ready();
    expect(s.available).toBe(false);
    await expect(s.hit('{tls}', 1, Date.now(), makeRate(2, 60_000))).rejects.toThrow(/unavailable/);
    expect(events[0]).toMatch(/^down:/);
    await s.close();
  }
});
