// JWT provider: verification rules and the attacks that have got forged or stale tokens past gateways.
// Requests run through the compiled policy's real chains; outcomes are asserted by status and reason.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OTHER_SECRET, SECRET, bearer, block, compile, hs256, now, rawToken, rsaPair, signWith, type Compiled } from '../helpers/identity.ts';

const rsa = rsaPair();

const POLICY = `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: { provider: main }
  providers:
    main:
      jwt:
        issuer: https://id.example.com
        audience: api
        algorithms: [HS256]
        keys:
          - { kid: k1, secret: "${SECRET}" }
        max_token_lifetime: 1h
        clock_skew: 30s
        required_claims: [sub]
        token_from:
          - { header: Authorization, scheme: Bearer }
          - { cookie: access_token }
        claims_to_headers: { sub: X-User-Id, roles: X-User-Roles }
    rsa:
      jwt:
        algorithms: [RS256, ES256]
        keys:
          - kid: r1
            public_key: ${block(rsa.publicPem, 14)}
    flex:
      jwt:
        algorithms: [HS256]
        keys:
          - { secret: "${SECRET}" }
        token_from:
          - { header: X-Api-Token, scheme: "" }
          - { query: access_token }
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app }
  - { name: rsa, match: { path_prefix: /rsa }, upstream: app, auth: rsa }
  - { name: flex, match: { path_prefix: /flex }, upstream: app, auth: { provider: flex } }
  - { name: open, match: { path: /health }, upstream: app, auth: none }
`;

const good = (claims: Record<string, unknown> = {}) => hs256({ sub: 'alice', iss: 'https://id.example.com', aud: 'api', roles: ['user'], ...claims }, { kid: 'k1' });

let c: Compiled;
beforeAll(async () => {
  c = await compile(POLICY);
});
afterAll(async () => {
  await c.close();
});

async function expectDenied(path: string, headers: Record<string, string>, reason: string, status = 401) {
  const out = await c.run(path, headers);
  expect({ status: out.status, reason: out.reason }).toEqual({ status, reason });
  return out;
}

describe('jwt: valid tokens', () => {
  it('lets a valid token through and sets subject, claims and claim headers', async () => {
    const out = await c.run('/api/x', bearer(await good()));
    expect(out.reason).toBeNull();
    expect(out.ctx!.subject).toBe('alice');
    expect(out.ctx!.claims).toMatchObject({ sub: 'alice', roles: ['user'] });
    expect(out.ctx!.upstreamHeaders['x-user-id']).toBe('alice');
    expect(out.ctx!.upstreamHeaders['x-user-roles']).toBe('user');
  });

  it('answers token_missing with a Bearer challenge and no error code', async () => {
    const out = await expectDenied('/api/x', {}, 'token_missing');
    expect(out.headers['www-authenticate']).toBe('Bearer realm="main"');
  });

  it('names the reason in WWW-Authenticate for a refused token', async () => {
    const out = await expectDenied('/api/x', bearer(await good({ exp: now() - 3600, iat: now() - 4000 })), 'token_expired');
    expect(out.headers['www-authenticate']).toBe('Bearer realm="main", error="invalid_token", error_description="token_expired"');
  });

  it('leaves auth: none routes open', async () => {
    expect((await c.run('/health')).reason).toBeNull();
  });

  it('serves a hot token from the cache: one verification, then hits', async () => {
    const token = await good({ jti: 'hot' });
    const before = await c.counter('portcullis_jwt_cache_total', { provider: 'main', result: 'hit' });
    const misses = await c.counter('portcullis_jwt_cache_total', { provider: 'main', result: 'miss' });
    for (let i = 0; i < 5; i++) expect((await c.run('/api/x', bearer(token))).reason).toBeNull();
    expect(await c.counter('portcullis_jwt_cache_total', { provider: 'main', result: 'hit' })).toBe(before + 4);
    expect(await c.counter('portcullis_jwt_cache_total', { provider: 'main', result: 'miss' })).toBe(misses + 1);
  });

  it('reads the token from the cookie when there is no header', async () => {
    expect((await c.run('/api/x', { cookie: `theme=dark; access_token=${await good()}` })).reason).toBeNull();
  });

  it('accepts the same token in header and cookie', async () => {
    const t = await good();
    expect((await c.run('/api/x', { ...bearer(t), cookie: `access_token=${t}` })).reason).toBeNull();
  });

  it('uses a custom header without scheme, and the query only where enabled', async () => {
    const t = await hs256({ sub: 'alice' });
    expect((await c.run('/flex/x', { 'x-api-token': t })).reason).toBeNull();
    expect((await c.run(`/flex/x?access_token=${t}`)).reason).toBeNull();
    await expectDenied(`/api/x?access_token=${t}`, {}, 'token_missing');
  });

  it('accepts an RS256 token signed by the configured key', async () => {
    const t = await signWith(rsa.privateKey, 'RS256', { sub: 'bob' }, { kid: 'r1' });
    expect((await c.run('/rsa/x', bearer(t))).reason).toBeNull();
  });
});

describe('jwt: attacks (each refused before the upstream)', () => {
  it.each(['none', 'None', 'NONE', 'nOnE', 'none '])('alg %j is refused, with or without a signature', async (alg) => {
    const payload = JSON.stringify({ sub: 'admin', iss: 'https://id.example.com', aud: 'api', exp: now() + 600, iat: now() });
    await expectDenied('/api/x', bearer(rawToken(JSON.stringify({ alg, typ: 'JWT' }), payload, { signature: '' })), 'token_signature_invalid');
    await expectDenied('/api/x', bearer(rawToken(JSON.stringify({ alg, typ: 'JWT' }), payload, { signature: 'AAAA' })), 'token_algorithm_invalid');
  });

  it('refuses RS/HS confusion: an HS256 token signed with the RSA public key as secret', async () => {
    const payload = JSON.stringify({ sub: 'admin', exp: now() + 600, iat: now() });
    for (const header of [{ alg: 'HS256', kid: 'r1' }, { alg: 'HS256' }]) {
      const forged = rawToken(JSON.stringify(header), payload, { secret: rsa.publicPem });
      await expectDenied('/rsa/x', bearer(forged), 'token_algorithm_invalid');
    }
  });

  it('never uses a public key as an HMAC secret even when the provider allows both families', async () => {
    const mixed = await compile(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: main
  providers:
    main:
      jwt:
        algorithms: [RS256, HS256]
        keys:
          - { kid: h1, secret: "${SECRET}" }
          - kid: r1
            public_key: ${block(rsa.publicPem, 14)}
routes: [{ match: { path_prefix: / }, upstream: app }]
`);
    try {
      const payload = JSON.stringify({ sub: 'admin', exp: now() + 600, iat: now() });
      const withKid = await mixed.run('/x', bearer(rawToken(JSON.stringify({ alg: 'HS256', kid: 'r1' }), payload, { secret: rsa.publicPem })));
      expect(withKid.reason).toBe('token_algorithm_invalid');
      const noKid = await mixed.run('/x', bearer(rawToken(JSON.stringify({ alg: 'HS256' }), payload, { secret: rsa.publicPem })));
      expect(noKid.reason).toBe('token_signature_invalid');
    } finally {
      await mixed.close();
    }
  });

  it.each(['../../../../dev/null', "' OR '1'='1", 'k1\u0000', '/etc/passwd', 'k1 '])('kid %j finds no key', async (kid) => {
    await expectDenied('/api/x', bearer(await hs256({ sub: 'a', iss: 'https://id.example.com', aud: 'api' }, { kid })), 'token_key_unknown');
  });

  it('refuses a kid that is not a short string', async () => {
    const payload = JSON.stringify({ sub: 'a', exp: now() + 60, iat: now() });
    await expectDenied('/api/x', bearer(rawToken(JSON.stringify({ alg: 'HS256', kid: 1 }), payload)), 'token_header_invalid');
    await expectDenied('/api/x', bearer(rawToken(JSON.stringify({ alg: 'HS256', kid: 'k'.repeat(300) }), payload)), 'token_header_invalid');
  });

  it.each(['jku', 'x5u', 'x5c'])('refuses a %s header (keys from the token are never fetched or trusted)', async (param) => {
    const t = await good();
    const [, p, s] = t.split('.');
    const forged = `${Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'k1', [param]: param === 'x5c' ? ['MIIB'] : 'https://evil.example/keys' })).toString('base64url')}.${p}.${s}`;
    await expectDenied('/api/x', bearer(forged), 'token_header_invalid');
  });

  it('refuses a token signed by the attacker key embedded as jwk', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const t = await signWith(privateKey, 'RS256', { sub: 'admin' }, { jwk: publicKey.export({ format: 'jwk' }) });
    await expectDenied('/rsa/x', bearer(t), 'token_header_invalid');
  });

  it('refuses unknown crit extensions', async () => {
    const payload = JSON.stringify({ sub: 'a', iss: 'https://id.example.com', aud: 'api', exp: now() + 60, iat: now() });
    const t = rawToken(JSON.stringify({ alg: 'HS256', kid: 'k1', crit: ['exp'], exp: 1 }), payload);
    await expectDenied('/api/x', bearer(t), 'token_header_invalid');
  });

  it('refuses a stripped signature', async () => {
    const t = await good();
    await expectDenied('/api/x', bearer(t.slice(0, t.lastIndexOf('.') + 1)), 'token_signature_invalid');
    await expectDenied('/api/x', bearer(t.slice(0, t.lastIndexOf('.'))), 'token_malformed');
  });

  it('refuses an altered signature or payload', async () => {
    const t = await good();
    const [h, p, s] = t.split('.');
    const flipped = s!.slice(0, 5) + (s![5] === 'A' ? 'B' : 'A') + s!.slice(6);
    await expectDenied('/api/x', bearer(`${h}.${p}.${flipped}`), 'token_signature_invalid');
    const admin = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), roles: ['admin'] })).toString('base64url');
    await expectDenied('/api/x', bearer(`${h}.${admin}.${s}`), 'token_signature_invalid');
  });

  it('refuses a token signed with another secret', async () => {
    await expectDenied('/api/x', bearer(await hs256({ sub: 'a', iss: 'https://id.example.com', aud: 'api' }, { kid: 'k1', secret: OTHER_SECRET })), 'token_signature_invalid');
  });

  it('refuses expired, not-yet-valid and future-issued tokens, within the clock skew only', async () => {
    await expectDenied('/api/x', bearer(await good({ iat: now() - 1000, exp: now() - 31 })), 'token_expired');
    expect((await c.run('/api/x', bearer(await good({ iat: now() - 1000, exp: now() - 10 })))).reason).toBeNull();
    await expectDenied('/api/x', bearer(await good({ nbf: now() + 120 })), 'token_not_yet_valid');
    await expectDenied('/api/x', bearer(await good({ iat: now() + 120, exp: now() + 600 })), 'token_issued_in_future');
  });

  it('requires exp', async () => {
    await expectDenied('/api/x', bearer(await good({ exp: undefined })), 'token_claim_missing');
  });

  it('refuses a token that lives longer than max_token_lifetime', async () => {
    await expectDenied('/api/x', bearer(await good({ iat: now(), exp: now() + 7 * 86400 })), 'token_lifetime_too_long');
    await expectDenied('/api/x', bearer(await good({ iat: undefined })), 'token_claim_missing');
  });

  it('refuses a wrong issuer or audience', async () => {
    await expectDenied('/api/x', bearer(await good({ iss: 'https://evil.example.com' })), 'token_issuer_invalid');
    await expectDenied('/api/x', bearer(await good({ aud: 'other' })), 'token_audience_invalid');
    expect((await c.run('/api/x', bearer(await good({ aud: ['other', 'api'] })))).reason).toBeNull();
  });

  it('refuses a missing required claim', async () => {
    await expectDenied('/api/x', bearer(await good({ sub: undefined })), 'token_claim_missing');
  });

  it('refuses duplicate JSON keys in the payload or header even when correctly signed', async () => {
    const iat = now();
    const dupPayload = `{"sub":"alice","iss":"https://id.example.com","aud":"api","iat":${iat},"exp":${iat + 600},"roles":["user"],"roles":["admin"]}`;
    await expectDenied('/api/x', bearer(rawToken('{"alg":"HS256","kid":"k1"}', dupPayload)), 'token_malformed');
    const okPayload = `{"sub":"alice","iss":"https://id.example.com","aud":"api","iat":${iat},"exp":${iat + 600}}`;
    await expectDenied('/api/x', bearer(rawToken('{"alg":"none","alg":"HS256","kid":"k1"}', okPayload)), 'token_malformed');
    const nested = `{"sub":"alice","iss":"https://id.example.com","aud":"api","iat":${iat},"exp":${iat + 600},"realm":{"r":1,"r":2}}`;
    await expectDenied('/api/x', bearer(rawToken('{"alg":"HS256","kid":"k1"}', nested)), 'token_malformed');
    expect((await c.run('/api/x', bearer(rawToken('{"alg":"HS256","kid":"k1"}', okPayload)))).reason).toBeNull();
  });

  it('refuses an oversized token before any work', async () => {
    await expectDenied('/api/x', bearer(await good({ pad: 'x'.repeat(9000) })), 'token_too_large');
  });

  it('refuses two different tokens in two places', async () => {
    const a = await good();
    const b = await good({ sub: 'mallory' });
    await expectDenied('/api/x', { ...bearer(a), cookie: `access_token=${b}` }, 'token_ambiguous', 400);
    await expectDenied('/api/x', { cookie: `access_token=${a}; access_token=${b}` }, 'token_ambiguous', 400);
    await expectDenied(`/flex/x?access_token=${a}&access_token=${b}`, {}, 'token_ambiguous', 400);
    await expectDenied(`/flex/x?access_token=${a}`, { 'x-api-token': b }, 'token_ambiguous', 400);
  });

  it('refuses garbage', async () => {
    for (const t of ['abc', 'a.b', 'a.b.c.d', '!!!.???.***', 'e30.e30.e30']) {
      const out = await c.run('/api/x', bearer(t));
      expect(out.status).toBe(401);
      expect(['token_malformed', 'token_algorithm_invalid']).toContain(out.reason);
    }
  });
});

describe('jwt: claims_to_headers', () => {
  it('removes client-sent copies, with or without a token, on every route', async () => {
    const out = await c.run('/api/x', { ...bearer(await good({ roles: undefined })), 'x-user-id': 'root', 'x-user-roles': 'admin' });
    expect(out.reason).toBeNull();
    expect(out.ctx!.upstreamHeaders['x-user-id']).toBe('alice');
    expect(out.ctx!.upstreamHeaders['x-user-roles']).toBeUndefined();
    const open = await c.run('/health', { 'x-user-id': 'root', 'x-user-roles': 'admin' });
    expect(open.ctx!.upstreamHeaders['x-user-id']).toBeUndefined();
    expect(open.ctx!.upstreamHeaders['x-user-roles']).toBeUndefined();
  });

  it('refuses claim values with CR/LF or over the size limit', async () => {
    await expectDenied('/api/x', bearer(await good({ sub: 'alice\r\nX-Admin: 1' })), 'claim_header_invalid');
    await expectDenied('/api/x', bearer(await good({ roles: ['r'.repeat(2000)] })), 'claim_header_invalid');
  });
});

describe('jwt: key rotation', () => {
  it('accepts both overlapping keys, and refuses tokens of a removed key', async () => {
    const both = (keys: string) => `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: main
  providers:
    main: { jwt: { algorithms: [HS256], keys: [${keys}] } }
routes: [{ match: { path_prefix: / }, upstream: app }]
`;
    const old = await hs256({ sub: 'a' }, { kid: 'old', secret: SECRET });
    const fresh = await hs256({ sub: 'a' }, { kid: 'new', secret: OTHER_SECRET });
    const overlap = await compile(both(`{ kid: old, secret: "${SECRET}" }, { kid: new, secret: "${OTHER_SECRET}" }`));
    expect((await overlap.run('/x', bearer(old))).reason).toBeNull();
    expect((await overlap.run('/x', bearer(fresh))).reason).toBeNull();
    await overlap.close();
    const after = await compile(both(`{ kid: new, secret: "${OTHER_SECRET}" }`));
    const out = await after.run('/x', bearer(old));
    expect(out.reason).toBe('token_key_unknown');
    expect(out.headers['www-authenticate']).toContain('error="invalid_token"');
    expect((await after.run('/x', bearer(fresh))).reason).toBeNull();
    await after.close();
  });
});

describe('jwt: key types', () => {
  it.each([
    ['EdDSA', () => generateKeyPairSync('ed25519')],
    ['Ed25519', () => generateKeyPairSync('ed25519')],
    ['ES384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ['ES512', () => generateKeyPairSync('ec', { namedCurve: 'P-521' })],
    ['PS256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['RS512', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ] as const)('verifies %s with a PEM or JWK public key', async (alg, make) => {
    const { publicKey, privateKey } = make();
    for (const text of [publicKey.export({ type: 'spki', format: 'pem' }) as string, JSON.stringify(publicKey.export({ format: 'jwk' }))]) {
      const k = await compile(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: main
  providers:
    main:
      jwt:
        algorithms: [${alg}]
        keys:
          - public_key: ${block(text, 14)}
routes: [{ match: { path_prefix: / }, upstream: app }]
`);
      try {
        expect((await k.run('/x', bearer(await signWith(privateKey, alg, { sub: 'a' })))).reason).toBeNull();
        const other = make().privateKey;
        expect((await k.run('/x', bearer(await signWith(other, alg, { sub: 'a' })))).reason).toBe('token_signature_invalid');
      } finally {
        await k.close();
      }
    }
  });
});

describe('jwt: several issuers on one route (any_of)', () => {
  const MULTI = `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { app: { url: http://127.0.0.1:9 } }
auth:
  default: { any_of: [internal, partner] }
  providers:
    internal:
      jwt: { issuer: https://id.internal, algorithms: [HS256], keys: [{ secret: "${SECRET}" }], claims_to_headers: { sub: X-User-Id } }
    partner:
      jwt:
        issuer: https://id.partner
        algorithms: [RS256]
        roles_claim: realm_access.roles
        keys:
          - public_key: ${block(rsa.publicPem, 14)}
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app, authorize: { roles_any: [admin] } }
`;
  let m: Compiled;
  beforeAll(async () => {
    m = await compile(MULTI);
  });
  afterAll(async () => {
    await m.close();
  });

  it('accepts each issuer with its own keys and its own roles claim', async () => {
    const internal = await hs256({ sub: 'a', iss: 'https://id.internal', roles: ['admin'] });
    const partner = await signWith(rsa.privateKey, 'RS256', { sub: 'p', iss: 'https://id.partner', realm_access: { roles: ['admin'] } });
    const a = await m.run('/api/x', bearer(internal));
    expect(a.reason).toBeNull();
    expect(a.ctx!.upstreamHeaders['x-user-id']).toBe('a');
    expect((await m.run('/api/x', bearer(partner))).reason).toBeNull();
    expect((await m.run('/api/x', bearer(partner))).reason).toBeNull(); // from the partner cache
    const partnerUser = await signWith(rsa.privateKey, 'RS256', { sub: 'p', iss: 'https://id.partner', roles: ['admin'] });
    expect((await m.run('/api/x', bearer(partnerUser))).reason).toBe('role_missing');
  });

  it('the unverified iss only chooses whose keys to try', async () => {
    // Claims the internal issuer but is signed with the partner key: internal keys refuse it.
    const forged = await signWith(rsa.privateKey, 'RS256', { sub: 'x', iss: 'https://id.internal', roles: ['admin'] });
    expect((await m.run('/api/x', bearer(forged))).reason).toBe('token_algorithm_invalid');
    const hsForged = await hs256({ sub: 'x', iss: 'https://id.partner', roles: ['admin'] });
    expect((await m.run('/api/x', bearer(hsForged))).reason).toBe('token_algorithm_invalid');
    expect((await m.run('/api/x', bearer(await hs256({ sub: 'x', iss: 'https://evil', roles: ['admin'] })))).reason).toBe('token_issuer_invalid');
    expect((await m.run('/api/x', bearer(await hs256({ sub: 'x', roles: ['admin'] })))).reason).toBe('token_malformed');
    expect((await m.run('/api/x')).reason).toBe('token_missing');
  });

  it('refuses any_of with a provider that has no issuer', async () => {
    await expect(compile(MULTI.replace('issuer: https://id.internal, ', ''))).rejects.toThrow(/has no issuer/);
  });
});
