// The pieces under the JWT provider: strict JSON, the verified-token cache, key pinning, JWKS parsing and
// Cache-Control reading. No clocks: expiry is driven by explicit timestamps.
import { createSecretKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseStrictJson, StrictJsonError } from '../../src/auth/json.ts';
import { maxAgeOf, parseJwks } from '../../src/auth/jwks.ts';
import { KeyError, fingerprintOf, importKey, publicKey } from '../../src/auth/keys.ts';
import { TokenCache, tokenKey } from '../../src/auth/token-cache.ts';

describe('strict JSON', () => {
  it('parses like JSON.parse', () => {
    const text = '{"a":1,"b":[true,null,"x\\"y",{"c":-1.5e3}],"d":{}}';
    expect(parseStrictJson(text)).toEqual(JSON.parse(text));
  });

  it.each(['{"a":1,"a":2}', '{"x":{"a":1,"a":1}}', '[{"k":1,"k":1}]', '{"a":1,"\\u0061":2}'])('refuses duplicate keys: %s', (text) => {
    expect(() => parseStrictJson(text)).toThrowError(StrictJsonError);
    try {
      parseStrictJson(text);
    } catch (err) {
      expect((err as StrictJsonError).code).toBe('duplicate_key');
    }
  });

  it.each(['', '{', '{"a":}', '{"a":1,}', '[1,]', '{"a":1} x', 'NaN', '{"a":01}', '"\u0001"'])('refuses invalid JSON: %j', (text) => {
    expect(() => parseStrictJson(text)).toThrowError(StrictJsonError);
  });

  it('keeps __proto__ as a plain key', () => {
    const v = parseStrictJson('{"__proto__":{"admin":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
    expect((v as { admin?: boolean }).admin).toBeUndefined();
  });

  it('refuses deep nesting', () => {
    expect(() => parseStrictJson('['.repeat(100) + ']'.repeat(100))).toThrowError(StrictJsonError);
  });
});

describe('verified-token cache', () => {
  it('keys by SHA-256, never the token itself', () => {
    expect(tokenKey('abc')).toBe('ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=');
  });

  it('expires entries at their time and evicts the least recently used', () => {
    const c = new TokenCache<number>(2);
    c.set('a', 1, 1000);
    c.set('b', 2, 5000);
    expect(c.get('a', 999)).toBe(1); // a is now most recent
    c.set('c', 3, 5000); // evicts b
    expect(c.get('b', 0)).toBeUndefined();
    expect(c.get('a', 999)).toBe(1);
    expect(c.get('a', 1000)).toBeUndefined(); // expired at its exp
    expect(c.size).toBe(1);
    c.clear();
    expect(c.get('c', 0)).toBeUndefined();
  });

  it('size 0 keeps nothing', () => {
    const c = new TokenCache<number>(0);
    c.set('a', 1, 1e15);
    expect(c.get('a', 0)).toBeUndefined();
  });
});

describe('keys', () => {
  it('pins a key to the algorithms of its type', () => {
    const secret = createSecretKey(Buffer.alloc(32, 1));
    expect(() => importKey(null, secret, ['RS256'], fingerprintOf(secret))).toThrowError(KeyError);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    expect(() => importKey(null, rsa, ['HS256'], fingerprintOf(rsa))).toThrowError(KeyError);
    expect([...importKey('r', rsa, ['RS256', 'PS256'], fingerprintOf(rsa)).byAlg.keys()]).toEqual(['RS256', 'PS256']);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(() => importKey(null, ec, ['ES384'], fingerprintOf(ec))).toThrowError(KeyError);
  });

  it('refuses RSA keys under 2048 bits', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    expect(() => importKey(null, small, ['RS256'], fingerprintOf(small))).toThrowError(/2048/);
  });

  it('reads PEM and JWK public keys, and takes the public half of a private key', () => {
    const { publicKey: pub, privateKey } = generateKeyPairSync('ed25519');
    expect(publicKey(pub.export({ type: 'spki', format: 'pem' }) as string).asymmetricKeyType).toBe('ed25519');
    expect(publicKey(JSON.stringify(pub.export({ format: 'jwk' }))).type).toBe('public');
    expect(publicKey(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string).type).toBe('public');
    expect(() => publicKey('{"kty":"oct","k":"AAAA"}')).toThrowError(KeyError);
  });
});

describe('JWKS parsing', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });

  it('keeps signing keys usable with the provider algorithms; skips oct, enc and foreign algorithms', () => {
    const keys = parseJwks({
      keys: [
        { ...rsa, kid: 'r1', alg: 'RS256', use: 'sig' },
        { ...rsa, kid: 'r2', use: 'enc' },
        { kty: 'oct', k: 'c2VjcmV0', kid: 'o1' },
        { ...ec, kid: 'e1' },
        { ...rsa, kid: 'r3', alg: 'PS512' },
        { kty: 'RSA', kid: 'broken', n: 'x' },
      ],
    }, ['RS256']);
    expect(keys.map((k) => k.kid)).toEqual(['r1']);
  });

  it('refuses a document without keys', () => {
    expect(() => parseJwks({}, ['RS256'])).toThrowError();
  });

  it('reads max-age from Cache-Control', () => {
    expect(maxAgeOf('public, max-age=300')).toBe(300_000);
    expect(maxAgeOf('s-maxage=60, max-age=300')).toBe(60_000);
    expect(maxAgeOf('no-store')).toBe(0);
    expect(maxAgeOf(undefined)).toBeUndefined();
    expect(maxAgeOf('public')).toBeUndefined();
  });
});
