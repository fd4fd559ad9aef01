// RequestContext keeps one shape: every field is assigned in its constructor and filters write declared
// fields only, so a forwarded and a denied request's contexts have the same keys in the same order (one
// hidden class on the hot path).
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { RequestContext } from '../../src/contract/context.ts';
import { runChain } from '../../src/filters/chain.ts';
import { compile, context, respond, route } from '../helpers/filters.ts';
import { SECRET } from '../helpers/identity.ts';

const POLICY = `version: 1
listeners:
  - address: 127.0.0.1:0
upstreams:
  app: { url: "http://127.0.0.1:3000" }
auth:
  default: main
  providers:
    main:
      jwt:
        issuer: https://id.example.com
        keys: [{ kid: k1, algorithm: HS256, secret: "${SECRET}" }]
        algorithms: [HS256]
        claims_to_headers: { sub: X-User-Id }
cors:
  web: { origins: [https://app.example.com], credentials: true, methods: [GET, POST] }
headers:
  strict: { hsts: { max_age: 1y } }
csrf:
  api: { token: "0123456789abcdef0123456789abcdef", trusted_origins: [https://app.example.com] }
rate_limits:
  per_ip: { key: client_ip, limit: 100, window: 1m }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: app
    cors: web
    headers: strict
    csrf: api
    rate_limit: [per_ip]
    audit: write
    response_headers: { add: { x-frame-options: DENY } }
`;

describe('RequestContext shape', () => {
  it('assigns every field in its constructor', () => {
    const ctx = new RequestContext('GET', '1.1', {}, '127.0.0.1', 'http', 0);
    for (const [key, value] of Object.entries(ctx)) expect(value, key).not.toBeUndefined();
  });

  it('has the same keys, in the same order, for a forwarded and a denied request', async () => {
    const policy = compile(POLICY);
    try {
      const r = route(policy, 'api');
      const token = await new SignJWT({ sub: 'alice' })
        .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
        .setIssuer('https://id.example.com')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(Buffer.from(SECRET));
      const allowed = context('POST', { authorization: `Bearer ${token}`, origin: 'https://app.example.com', 'x-csrf-token': '0123456789abcdef0123456789abcdef' }, { path: '/api/x' });
      allowed.route = r;
      const denied = context('POST', { origin: 'https://app.example.com' }, { path: '/api/x' });
      denied.route = r;
      const a = await runChain(r.request!, r.requestNames, allowed);
      const d = await runChain(r.request!, r.requestNames, denied);
      expect(a).toBeUndefined();
      expect(d?.reason).toBe('token_missing');
      respond(r, allowed, 200);
      respond(r, denied, d!.status);
      expect(allowed.subject).toBe('alice');
      expect(Object.keys(allowed)).toEqual(Object.keys(denied));
      expect(Object.keys(allowed)).toEqual(Object.keys(new RequestContext('GET', '1.1', {}, '127.0.0.1', 'http', 0)));
    } finally {
      await policy.close();
    }
  });
});
