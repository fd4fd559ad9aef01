// `portcullis token`: mints a signed JWT for development and tests (never for production identities).
import { createPrivateKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { parseDuration } from '../config/schema.ts';

export interface MintOptions {
  /** HMAC secret (text in `secretEncoding`), or a private key (PEM or JWK JSON). */
  secret?: string;
  secretEncoding?: 'utf8' | 'base64' | 'base64url' | 'hex';
  privateKey?: string;
  alg?: string;
  kid?: string;
  claims?: Record<string, unknown>;
  /** Lifetime in ms; `exp = iat + ttl`. null: no exp. */
  ttlMs?: number | null;
  /** Issue time in seconds (default now). */
  iat?: number;
}

function defaultAlg(key: KeyObject): string {
  if (key.type === 'secret') return 'HS256';
  const t = key.asymmetricKeyType;
  if (t === 'rsa' || t === 'rsa-pss') return 'RS256';
  if (t === 'ed25519') return 'EdDSA';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : 'ES256';
}

export async function mintToken(o: MintOptions): Promise<string> {
  let key: KeyObject;
  if (o.secret !== undefined) key = createSecretKey(Buffer.from(o.secret, o.secretEncoding ?? 'utf8'));
  else if (o.privateKey !== undefined) {
    const text = o.privateKey.trim();
    key = text.startsWith('{') ? createPrivateKey({ key: JSON.parse(text) as import('node:crypto').JsonWebKey, format: 'jwk' }) : createPrivateKey(text);
  } else throw new Error('give --secret or --key');
  const alg = o.alg ?? defaultAlg(key);
  const iat = o.iat ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iat, ...(o.claims ?? {}) };
  const ttl = o.ttlMs === undefined ? 15 * 60_000 : o.ttlMs;
  if (ttl !== null && claims.exp === undefined) claims.exp = (claims.iat as number) + Math.round(ttl / 1000);
  const jwt = new SignJWT(claims).setProtectedHeader(o.kid !== undefined ? { alg, typ: 'JWT', kid: o.kid } : { alg, typ: 'JWT' });
  return jwt.sign(key);
}

function claimValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export interface TokenArgs {
  secret?: string;
  'secret-encoding'?: string;
  key?: string;
  alg?: string;
  kid?: string;
  sub?: string;
  roles?: string;
  scope?: string;
  iss?: string;
  aud?: string;
  ttl?: string;
  claim?: string[];
  'no-exp'?: boolean;
}

/** The `portcullis token` command: prints the token on stdout. */
export async function tokenCommand(args: TokenArgs): Promise<string> {
  const claims: Record<string, unknown> = {};
  if (args.sub !== undefined) claims.sub = args.sub;
  if (args.roles !== undefined) claims.roles = args.roles.split(',').map((r) => r.trim()).filter(Boolean);
  if (args.scope !== undefined) claims.scope = args.scope;
  if (args.iss !== undefined) claims.iss = args.iss;
  if (args.aud !== undefined) claims.aud = args.aud;
  for (const c of args.claim ?? []) {
    const eq = c.indexOf('=');
    if (eq <= 0) throw new Error(`--claim wants NAME=VALUE, got "${c}"`);
    claims[c.slice(0, eq)] = claimValue(c.slice(eq + 1));
  }
  let ttlMs: number | null = 15 * 60_000;
  if (args['no-exp']) ttlMs = null;
  else if (args.ttl !== undefined) {
    const ms = parseDuration(args.ttl);
    if (ms === undefined) throw new Error(`invalid --ttl "${args.ttl}": write e.g. 15m, 1h`);
    ttlMs = ms;
  }
  if ((args.secret === undefined) === (args.key === undefined)) throw new Error('give exactly one of --secret VALUE or --key FILE');
  const encoding = args['secret-encoding'] as MintOptions['secretEncoding'];
  if (encoding !== undefined && !['utf8', 'base64', 'base64url', 'hex'].includes(encoding)) throw new Error('--secret-encoding is one of utf8, base64, base64url, hex');
  const token = await mintToken({
    secret: args.secret,
    secretEncoding: encoding,
    privateKey: args.key !== undefined ? readFileSync(args.key, 'utf8') : undefined,
    alg: args.alg,
    kid: args.kid,
    claims,
    ttlMs,
  });
  return token + '\n';
}
