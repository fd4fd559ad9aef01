// The OIDC session cookie codec: sealed payloads open only with the same purpose, provider and one of the
// secrets; tampering, foreign keys and expiry are told apart; long values split into numbered cookies.
import { describe, expect, it } from 'vitest';
import { SessionCodec, clearChunked, cookieNames, presentChunks, readChunked, setChunked, weakSecretProblem, COOKIE_CHUNK, type CookieAttributes } from '../../src/auth/oidc/codec.ts';
import { singleCookie } from '../../src/proxy/cookie.ts';

const A = 'b1e7c5d0a4f3e2d1c0b9a8f7e6d5c4b3a2918f7e6d5c4b3a';
const B = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978';

describe('SessionCodec', () => {
  it('seals and opens a payload, with its expiry', async () => {
    const c = new SessionCodec([A], 'sso');
    const now = Date.now();
    const token = await c.seal('session', { sub: 'alice', n: 1 }, now + 60_000);
    expect(token.split('.')).toHaveLength(5);
    expect(token).not.toContain('alice');
    expect(await c.open('session', token, now)).toMatchObject({ sub: 'alice', n: 1, exp: Math.ceil((now + 60_000) / 1000) });
    expect(await c.open('session', token, now + 61_000)).toBe('expired');
  });

  it('refuses a tampered token, another purpose, another provider and another secret', async () => {
    const c = new SessionCodec([A], 'sso');
    const token = await c.seal('session', { sub: 'alice' }, Date.now() + 60_000);
    const parts = token.split('.');
    const flip = (s: string) => (s[5] === 'A' ? s.slice(0, 5) + 'B' + s.slice(6) : s.slice(0, 5) + 'A' + s.slice(6));
    for (const i of [0, 2, 3, 4]) {
      const p = [...parts];
      p[i] = flip(p[i]!);
      expect(await c.open('session', p.join('.'))).toBe('invalid');
    }
    expect(await c.open('login', token)).toBe('invalid');
    expect(await new SessionCodec([A], 'other').open('session', token)).toBe('invalid');
    expect(await new SessionCodec([B], 'sso').open('session', token)).toBe('invalid');
    for (const junk of ['', 'abc', 'a.b.c.d.e', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig']) expect(await c.open('session', junk)).toBe('invalid');
  });

  it('opens with every secret of a rotation and seals with the first', async () => {
    const old = new SessionCodec([A], 'sso');
    const rotating = new SessionCodec([B, A], 'sso');
    const after = new SessionCodec([B], 'sso');
    const t1 = await old.seal('session', { sub: 'x' }, Date.now() + 60_000);
    expect(await rotating.open('session', t1)).toMatchObject({ sub: 'x' });
    const t2 = await rotating.seal('session', { sub: 'y' }, Date.now() + 60_000);
    expect(await after.open('session', t2)).toMatchObject({ sub: 'y' });
    expect(await old.open('session', t2)).toBe('invalid');
    expect(await after.open('session', t1)).toBe('invalid');
  });

  it('calls short and repetitive secrets weak', () => {
    expect(weakSecretProblem('short')).toMatch(/40 bits/);
    expect(weakSecretProblem('a'.repeat(64))).toMatch(/distinct/);
    expect(weakSecretProblem(A)).toBeNull();
  });
});

describe('chunked cookies', () => {
  const attrs: CookieAttributes = { secure: true, maxAge: 3600, path: '/', sameSite: 'Lax' };
  /** What a browser would send back after these Set-Cookie lines (Max-Age=0 deletes). */
  function jar(lines: string[], before: Map<string, string> = new Map()): Map<string, string> {
    const out = new Map(before);
    for (const l of lines) {
      const [pair] = l.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      if (/Max-Age=0/.test(l)) out.delete(name);
      else out.set(name, pair!.slice(eq + 1));
    }
    return out;
  }
  const header = (j: Map<string, string>) => [...j].map(([k, v]) => `${k}=${v}`).join('; ');
  const read = (h: string, name: string) => readChunked((n) => singleCookie(h, n), name);

  it('keeps a short value in one cookie with every flag', () => {
    const lines = setChunked('__Host-s', 'abc', attrs, new Set());
    expect(lines).toEqual(['__Host-s=abc; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax']);
  });

  it('splits a long value, reads it back, and clears stale pieces when it shrinks', () => {
    const long = 'x'.repeat(COOKIE_CHUNK * 2) + 'yz';
    const j1 = jar(setChunked('__Host-s', long, attrs, new Set()));
    expect([...j1.keys()]).toEqual(['__Host-s.0', '__Host-s.1', '__Host-s.2']);
    for (const v of j1.values()) expect(v.length).toBeLessThanOrEqual(COOKIE_CHUNK);
    const h1 = header(j1);
    expect(read(h1, '__Host-s')).toBe(long);
    const present = presentChunks(cookieNames(h1), '__Host-s');
    const j2 = jar(setChunked('__Host-s', 'short', attrs, present), j1);
    expect([...j2.keys()]).toEqual(['__Host-s']);
    expect(read(header(j2), '__Host-s')).toBe('short');
    const j3 = jar(clearChunked('__Host-s', attrs, presentChunks(cookieNames(header(j2)), '__Host-s')), j2);
    expect(j3.size).toBe(0);
    expect(read('', '__Host-s')).toBeNull();
  });

  it('refuses two different values of a piece (a cookie tossed in beside the real one)', () => {
    expect(read('__Host-s.0=aa; __Host-s.0=bb', '__Host-s')).toBeUndefined();
    expect(read('__Host-s=aa; __Host-s=bb', '__Host-s')).toBeUndefined();
  });
});
