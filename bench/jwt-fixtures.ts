// Shared pieces of the JWT bench scenarios (not a scenario itself): one secret, one RSA key pair, policies, minting.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { BenchContext } from './scenarios/types.ts';

export const SECRET = randomBytes(32).toString('hex');
export const RSA = generateKeyPairSync('rsa', { modulusLength: 2048 });
const RSA_PUBLIC_PEM = RSA.publicKey.export({ type: 'spki', format: 'pem' }) as string;

export function jwtPolicy(ctx: BenchContext, alg: 'HS256' | 'RS256'): string {
  const key = alg === 'HS256'
    ? `          - { kid: k1, secret: "${SECRET}" }`
    : `          - kid: k1\n            public_key: |\n${RSA_PUBLIC_PEM.trimEnd().split('\n').map((l) => ' '.repeat(14) + l).join('\n')}`;
  return `
version: 1
listeners: [{ address: "\${LISTEN}" }]
admin: { address: "\${ADMIN}" }
log: { access: off }
upstreams:
  app: { url: "${ctx.upstreamUrl}", max_connections: 64 }   # as the passthrough reference
auth:
  default: main
  providers:
    main:
      jwt:
        issuer: https://id.bench
        audience: bench
        algorithms: [${alg}]
        keys:
${key}
        claims_to_headers: { sub: X-User-Id }
routes:
  - { name: bench, match: { path_prefix: / }, upstream: app, authorize: { roles_any: [user] } }
`;
}

export function mint(alg: 'HS256' | 'RS256', sub: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub, iss: 'https://id.bench', aud: 'bench', roles: ['user'], iat: now, exp: now + 3600 })
    .setProtectedHeader({ alg, kid: 'k1' })
    .sign(alg === 'HS256' ? Buffer.from(SECRET) : RSA.privateKey);
}
