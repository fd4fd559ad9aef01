// The Redis session store against the real Redis: a session saved on one store is loaded and removed, and a
// reply Redis sent in time survives a process too busy to read it before the command timeout.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { SessionCodec } from '../../src/auth/oidc/codec.ts';
import { RedisSessionStore, type Session } from '../../src/auth/oidc/store.ts';
import { createClient, parseRedisUrl, type RedisTarget } from '../../src/ratelimit/redis.ts';

const SECRET = 'b1e7c5d0a4f3e2d1c0b9a8f7e6d5c4b3a2918f7e6d5c4b3a';
const TIMEOUT_MS = 250; // generous: the plain save/load must not time out on a busy machine
const client = createClient(parseRedisUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379') as RedisTarget, { connectTimeoutMs: 1_000, commandTimeoutMs: TIMEOUT_MS });
client.on('error', () => undefined);
const store = new RedisSessionStore(new SessionCodec([SECRET], 'sso'), client, `test:oidc:${randomUUID()}:`, 60_000, TIMEOUT_MS);
afterAll(() => store.close());

function session(): Session {
  const now = Date.now();
  return { sub: 'alice', claims: { sub: 'alice' }, created: now, seen: now, expires: now + 60_000, rt: null, idt: null, end: now + 3_600_000 };
}

describe('RedisSessionStore', () => {
  it('saves, loads and removes a session', async () => {
    await client.connect();
    const s = session();
    const cookie = await store.save(s);
    expect(await store.load(cookie)).toMatchObject({ sub: 'alice', sid: s.sid });
    await store.remove(s);
    expect(await store.load(cookie)).toBe('expired');
  });

  it('keeps an answer Redis sent in time while this process was too busy to read it', async () => {
    const cookie = await store.save(session());
    // Busy for three command timeouts once the GET is written (auto-pipelined commands leave on the next
    // tick; the check phase comes after): its reply waits in the socket meanwhile.
    const get = client.get.bind(client);
    (client as unknown as { get: typeof client.get }).get = ((...args: Parameters<typeof client.get>) => {
      const reply = get(...args);
      setImmediate(() => {
        const t = performance.now();
        while (performance.now() - t < 3 * TIMEOUT_MS);
      });
      return reply;
    }) as typeof client.get;
    try {
      expect(await store.load(cookie)).toMatchObject({ sub: 'alice' });
    } finally {
      (client as unknown as { get: typeof client.get }).get = get;
    }
  });
});
