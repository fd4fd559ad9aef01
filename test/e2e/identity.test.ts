// The real gateway process in front of a real upstream: every forged or stale token is refused with 401
// and its reason, and the upstream receives nothing; authorization failures are 403 with theirs.
import { generateKeyPairSync } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { OTHER_SECRET, SECRET, block, hs256, now, rawToken, rsaPair, signWith } from '../helpers/identity.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;
const rsa = rsaPair();

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: { provider: main }
  providers:
    main:
      jwt:
        issuer: https://id.example.com
        audience: api
        algorithms: [HS256]
        keys: [{ kid: k1, secret: "\${env:JWT_SECRET}" }]
        max_token_lifetime: 1h
        token_from: [{ header: Authorization, scheme: Bearer }, { cookie: access_token }]
        claims_to_headers: { sub: X-User-Id, roles: X-User-Roles }
    rsa:
      jwt:
        algorithms: [RS256]
        keys:
          - kid: r1
            public_key: ${block(rsa.publicPem, 14)}
routes:
  - { name: api, match: { path_prefix: /api }, upstream: app }
  - { name: admin, match: { path_prefix: /admin }, upstream: app, authorize: { roles_any: [admin] } }
  - { name: items, match: { path_prefix: /items }, upstream: app, authorize: { methods: { user: [GET, HEAD], admin: ["*"] } } }
  - { name: rsa, match: { path_prefix: /rsa }, upstream: app, auth: rsa }
  - { name: health, match: { path: /health }, upstream: app, auth: none }
`, { env: { JWT_SECRET: SECRET } });
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

beforeEach(() => {
  upstream.received.length = 0;
});

function send(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(gw.url + path, { method, headers }, (res) => {
      let data = '';
      res.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${gw.admin.startsWith('http') ? '' : 'http://'}${gw.admin}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const claims = (extra: Record<string, unknown> = {}) => ({ sub: 'alice', iss: 'https://id.example.com', aud: 'api', roles: ['user'], ...extra });
const valid = (extra: Record<string, unknown> = {}) => hs256(claims(extra), { kid: 'k1' });

describe('identity e2e: accepted', () => {
  it('forwards a valid token with claim headers set by the gateway, client copies removed', async () => {
    const r = await send('/api/me', { authorization: `Bearer ${await valid()}`, 'x-user-id': 'root', 'x-user-roles': 'admin' });
    expect(r.status).toBe(200);
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]!.headers['x-user-id']).toBe('alice');
    expect(upstream.received[0]!.headers['x-user-roles']).toBe('user');
  });

  it('strips identity headers on auth: none routes too', async () => {
    await send('/health', { 'x-user-id': 'root' });
    expect(upstream.received[0]!.headers['x-user-id']).toBeUndefined();
  });
});

describe('identity e2e: every attack is refused and nothing reaches the upstream', () => {
  const iat = now();
  const okPayload = JSON.stringify(claims({ iat, exp: iat + 600 }));
  const cases: [string, () => Promise<Record<string, string>> | Record<string, string>, string, string?][] = [
    ['no token', () => ({}), 'token_missing'],
    ['alg none', () => ({ authorization: `Bearer ${rawToken('{"alg":"none","typ":"JWT"}', okPayload, { signature: 'x' })}` }), 'token_algorithm_invalid'],
    ['alg NoNe', () => ({ authorization: `Bearer ${rawToken('{"alg":"NoNe"}', okPayload, { signature: 'x' })}` }), 'token_algorithm_invalid'],
    ['alg none without signature', () => ({ authorization: `Bearer ${rawToken('{"alg":"none"}', okPayload, { signature: '' })}` }), 'token_signature_invalid'],
    ['RS/HS confusion', () => ({ authorization: `Bearer ${rawToken('{"alg":"HS256","kid":"r1"}', okPayload, { secret: rsa.publicPem })}` }), 'token_algorithm_invalid', 'rsa'],
    ['kid path traversal', () => ({ authorization: `Bearer ${rawToken('{"alg":"HS256","kid":"../../../../dev/null"}', okPayload, { secret: '' })}` }), 'token_key_unknown'],
    ['kid SQL injection', () => ({ authorization: `Bearer ${rawToken('{"alg":"HS256","kid":"x\' UNION SELECT \'key"}', okPayload, { secret: 'key' })}` }), 'token_key_unknown'],
    ['jku header', () => ({ authorization: `Bearer ${rawToken('{"alg":"HS256","kid":"k1","jku":"https://evil/jwks"}', okPayload)}` }), 'token_header_invalid'],
    ['x5u header', () => ({ authorization: `Bearer ${rawToken('{"alg":"HS256","kid":"k1","x5u":"https://evil/cert"}', okPayload)}` }), 'token_header_invalid'],
    ['stripped signature', async () => { const t = await valid(); return { authorization: `Bearer ${t.slice(0, t.lastIndexOf('.') + 1)}` }; }, 'token_signature_invalid'],
    ['altered payload', async () => { const [h, , s] = (await valid()).split('.'); return { authorization: `Bearer ${h}.${Buffer.from(JSON.stringify(claims({ roles: ['admin'], iat, exp: iat + 600 }))).toString('base64url')}.${s}` }; }, 'token_signature_invalid'],
    ['other secret', async () => ({ authorization: `Bearer ${await hs256(claims(), { kid: 'k1', secret: OTHER_SECRET })}` }), 'token_signature_invalid'],
    ['expired', async () => ({ authorization: `Bearer ${await valid({ iat: iat - 3000, exp: iat - 600 })}` }), 'token_expired'],
    ['not yet valid', async () => ({ authorization: `Bearer ${await valid({ nbf: iat + 600 })}` }), 'token_not_yet_valid'],
    ['7-day token', async () => ({ authorization: `Bearer ${await valid({ exp: iat + 7 * 86400 })}` }), 'token_lifetime_too_long'],
    ['wrong issuer', async () => ({ authorization: `Bearer ${await valid({ iss: 'https://evil' })}` }), 'token_issuer_invalid'],
    ['wrong audience', async () => ({ authorization: `Bearer ${await valid({ aud: 'other' })}` }), 'token_audience_invalid'],
    ['duplicate JSON keys', () => ({ authorization: `Bearer ${rawToken('{"alg":"HS256","kid":"k1"}', okPayload.replace('{', '{"roles":["admin"],'))}` }), 'token_malformed'],
    ['oversized', async () => ({ authorization: `Bearer ${await valid({ pad: 'x'.repeat(9000) })}` }), 'token_too_large'],
    ['two places', async () => ({ authorization: `Bearer ${await valid()}`, cookie: `access_token=${await valid({ sub: 'mallory' })}` }), 'token_ambiguous'],
  ];

  it.each(cases)('%s', async (_name, headersOf, reason, route = 'api') => {
    const headers = await headersOf();
    const r = await send(`/${route}/x`, headers);
    expect(r.status).toBe(reason === 'token_ambiguous' ? 400 : 401);
    expect(r.headers['content-type']).toBe('application/problem+json');
    const body = JSON.parse(r.body) as { reason: string };
    expect(body.reason).toBe(reason);
    expect(r.headers['www-authenticate']).toMatch(route === 'api' ? /^Bearer realm="main"/ : /^Bearer realm="rsa"/);
    const token = (headers.authorization ?? '').replace('Bearer ', '');
    if (token.length > 20) expect(r.body).not.toContain(token);
    expect(r.body).not.toContain(SECRET);
    expect(upstream.received).toHaveLength(0);
  });

  it('an embedded jwk signed by the attacker is refused on the RSA route', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const t = await signWith(privateKey, 'RS256', { sub: 'admin' }, { kid: 'r1', jwk: publicKey.export({ format: 'jwk' }) });
    const r = await send('/rsa/x', { authorization: `Bearer ${t}` });
    expect([r.status, (JSON.parse(r.body) as { reason: string }).reason]).toEqual([401, 'token_header_invalid']);
    expect(upstream.received).toHaveLength(0);
  });

  it('counts denies by reason', async () => {
    expect(await metric('portcullis_denies_total', { route: 'api', filter: 'jwt', reason: 'token_expired' })).toBeGreaterThanOrEqual(1);
    expect(await metric('portcullis_denies_total', { route: 'api', filter: 'jwt', reason: 'token_algorithm_invalid' })).toBeGreaterThanOrEqual(2);
  });
});

describe('identity e2e: authorization', () => {
  it('refuses a missing role with 403 role_missing, forwarding nothing', async () => {
    const before = await metric('portcullis_denies_total', { route: 'admin', filter: 'authorize', reason: 'role_missing' });
    const r = await send('/admin/users', { authorization: `Bearer ${await valid()}` });
    expect(r.status).toBe(403);
    expect((JSON.parse(r.body) as { reason: string }).reason).toBe('role_missing');
    expect(r.headers['www-authenticate']).toContain('error="insufficient_scope"');
    expect(upstream.received).toHaveLength(0);
    expect(await metric('portcullis_denies_total', { route: 'admin', filter: 'authorize', reason: 'role_missing' })).toBe(before + 1);
  });

  it('lets user read and admin write by method', async () => {
    const user = `Bearer ${await valid()}`;
    const admin = `Bearer ${await valid({ sub: 'root', roles: ['admin'] })}`;
    expect((await send('/items/1', { authorization: user })).status).toBe(200);
    const del = await send('/items/1', { authorization: user }, 'DELETE');
    expect([del.status, (JSON.parse(del.body) as { reason: string }).reason]).toEqual([403, 'method_not_allowed_for_role']);
    expect((await send('/items/1', { authorization: admin }, 'DELETE')).status).toBe(200);
    expect(upstream.received.map((r) => r.method)).toEqual(['GET', 'DELETE']);
    expect(upstream.received[1]!.headers['x-user-id']).toBe('root');
  });
});
