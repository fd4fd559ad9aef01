// Where a signed-in session lives. `cookie`: the whole session sealed in the browser's cookie, no server
// state (any replica with the secrets reads it; logout can only clear the cookie of the browser that asks).
// `redis`: the cookie holds a sealed random session id, the session itself is sealed again under a
// hash of that id in Redis, shared by every replica; logout deletes it, so a copied cookie dies with it
// everywhere. Stores know no HTTP: they turn a session into a cookie value and back.
import { createHash, randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { withDeadline } from '../../ratelimit/deadline.ts';
import type { SessionCodec } from './codec.ts';

export interface Session {
  /** Subject (the ID token `sub`). */
  sub: string;
  /** The verified ID token claims. */
  claims: Record<string, unknown>;
  /** Sign-in time and last recorded activity (ms). */
  created: number;
  seen: number;
  /** When the access token expires (ms): refreshed shortly before with `rt`, else the session ends then. */
  expires: number;
  rt: string | null;
  /** The ID token, sent as `id_token_hint` at logout. */
  idt: string | null;
  /** Absolute end (ms): sign-in time + absolute timeout. */
  end: number;
  /** Redis store: the session id (absent in cookie mode). */
  sid?: string;
}

export type Loaded = Session | 'invalid' | 'expired' | 'unavailable';

export interface SessionStore {
  readonly kind: 'cookie' | 'redis';
  /** Saves the session; resolves with the cookie value (unchanged in Redis mode for an existing session). */
  save(session: Session): Promise<string>;
  load(cookie: string): Promise<Loaded>;
  /** Ends the session everywhere this store can (Redis: deletes it; cookie: nothing to do). */
  remove(session: Session): Promise<void>;
  /** True when the store can answer now. */
  readonly available: boolean;
  close(): Promise<void>;
}

function asSession(p: Record<string, unknown>): Session | 'invalid' {
  if (typeof p.sub !== 'string' || p.claims === null || typeof p.claims !== 'object' || typeof p.created !== 'number' || typeof p.seen !== 'number' || typeof p.expires !== 'number' || typeof p.end !== 'number') return 'invalid';
  return {
    sub: p.sub,
    claims: p.claims as Record<string, unknown>,
    created: p.created,
    seen: p.seen,
    expires: p.expires,
    rt: typeof p.rt === 'string' ? p.rt : null,
    idt: typeof p.idt === 'string' ? p.idt : null,
    end: p.end,
    ...(typeof p.sid === 'string' ? { sid: p.sid } : {}),
  };
}

function body(s: Session): Record<string, unknown> {
  const { sub, claims, created, seen, expires, rt, idt, end } = s;
  return { sub, claims, created, seen, expires, rt, idt, end };
}

export class CookieSessionStore implements SessionStore {
  readonly kind = 'cookie' as const;
  readonly available = true;
  readonly #codec: SessionCodec;
  constructor(codec: SessionCodec) {
    this.#codec = codec;
  }
  save(session: Session): Promise<string> {
    return this.#codec.seal('session', body(session), session.end);
  }
  async load(cookie: string): Promise<Loaded> {
    const p = await this.#codec.open('session', cookie);
    return typeof p === 'string' ? p : asSession(p);
  }
  async remove(): Promise<void> {}
  async close(): Promise<void> {}
}

export class RedisSessionStore implements SessionStore {
  readonly kind = 'redis' as const;
  readonly #codec: SessionCodec;
  readonly #client: Redis | Cluster;
  readonly #prefix: string;
  readonly #idleMs: number;
  readonly #timeoutMs: number;

  /**
   * `timeoutMs` is the store's own deadline on each command (src/ratelimit/deadline.ts: a reply that came in
   * time is not lost to a busy event loop); give the client a longer ioredis timeout as the backstop.
   */
  constructor(codec: SessionCodec, client: Redis | Cluster, prefix: string, idleMs: number, timeoutMs: number) {
    this.#codec = codec;
    this.#client = client;
    this.#prefix = prefix;
    this.#idleMs = idleMs;
    this.#timeoutMs = timeoutMs;
  }

  get available(): boolean {
    return this.#client.status === 'ready';
  }

  /** The Redis key of a session id: a hash, so the keys listed in Redis are no cookies to replay. */
  #key(sid: string): string {
    return this.#prefix + createHash('sha256').update(sid).digest('base64url');
  }

  async save(session: Session): Promise<string> {
    const sid = session.sid ?? randomBytes(32).toString('base64url');
    session.sid = sid;
    const ttl = Math.max(1, Math.min(this.#idleMs, session.end - Date.now()));
    const value = await this.#codec.seal('session', body(session), session.end);
    await withDeadline(this.#client.set(this.#key(sid), value, 'PX', ttl), this.#timeoutMs);
    return this.#codec.seal('session', { sid }, session.end);
  }

  async load(cookie: string): Promise<Loaded> {
    const ref = await this.#codec.open('session', cookie);
    if (typeof ref === 'string') return ref;
    if (typeof ref.sid !== 'string') return 'invalid';
    let value: string | null;
    try {
      value = await withDeadline(this.#client.get(this.#key(ref.sid)), this.#timeoutMs);
    } catch {
      return 'unavailable';
    }
    // Gone: logged out (on any replica), idle past its TTL, or never stored.
    if (value === null) return 'expired';
    const p = await this.#codec.open('session', value);
    if (typeof p === 'string') return p;
    const s = asSession(p);
    if (s !== 'invalid') s.sid = ref.sid;
    return s;
  }

  async remove(session: Session): Promise<void> {
    if (session.sid !== undefined) await withDeadline(this.#client.del(this.#key(session.sid)), this.#timeoutMs);
  }

  async close(): Promise<void> {
    this.#client.disconnect();
  }
}
