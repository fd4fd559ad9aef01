// Verification keys: imported once when the policy compiles (or a JWKS is fetched), each pinned to the
// algorithms it may verify. The token's `alg` only selects among those; it never decides what a key is.
import { createPublicKey, createSecretKey, type KeyObject, type webcrypto } from 'node:crypto';

export const JWS_ALGORITHMS = [
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
] as const;
export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];

export type KeyKind = 'secret' | 'rsa' | 'ec-p256' | 'ec-p384' | 'ec-p521' | 'ed25519';

/** The key kind each algorithm needs: an HS algorithm never meets a public key, and the reverse. */
const KIND_OF: Record<JwsAlgorithm, KeyKind> = {
  HS256: 'secret', HS384: 'secret', HS512: 'secret',
  RS256: 'rsa', RS384: 'rsa', RS512: 'rsa', PS256: 'rsa', PS384: 'rsa', PS512: 'rsa',
  ES256: 'ec-p256', ES384: 'ec-p384', ES512: 'ec-p521',
  EdDSA: 'ed25519', Ed25519: 'ed25519',
};

function webAlgorithm(alg: JwsAlgorithm): webcrypto.AlgorithmIdentifier | webcrypto.HmacImportParams | webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams {
  const hash = `SHA-${alg.slice(2)}`;
  switch (alg.slice(0, 2)) {
    case 'HS': return { name: 'HMAC', hash };
    case 'RS': return { name: 'RSASSA-PKCS1-v1_5', hash };
    case 'PS': return { name: 'RSA-PSS', hash };
    case 'ES': return { name: 'ECDSA', namedCurve: alg === 'ES256' ? 'P-256' : alg === 'ES384' ? 'P-384' : 'P-521' };
    default: return { name: 'Ed25519' };
  }
}

export interface VerificationKey {
  readonly kid: string | null;
  readonly kind: KeyKind;
  /** One imported CryptoKey per algorithm this key may verify. */
  readonly byAlg: ReadonlyMap<string, webcrypto.CryptoKey>;
  /** Secret length in bits (HS keys), modulus length (RSA), else 0. */
  readonly bits: number;
  /** Stable fingerprint of the key material, to notice a changed key set. */
  readonly fingerprint: string;
}

export class KeyError extends Error {}

export function kindOf(key: KeyObject): KeyKind {
  if (key.type === 'secret') return 'secret';
  const t = key.asymmetricKeyType;
  if (t === 'rsa' || t === 'rsa-pss') return 'rsa';
  if (t === 'ed25519') return 'ed25519';
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return 'ec-p256';
    if (curve === 'secp384r1' || curve === 'P-384') return 'ec-p384';
    if (curve === 'secp521r1' || curve === 'P-521') return 'ec-p521';
  }
  throw new KeyError(`unsupported key type ${t ?? key.type}`);
}

/** Algorithms of `allowed` usable with a key of `kind`. */
export function algorithmsFor(kind: KeyKind, allowed: readonly string[]): JwsAlgorithm[] {
  return (allowed as JwsAlgorithm[]).filter((a) => KIND_OF[a] === kind);
}

/**
 * Imports `material` for exactly the algorithms given (each checked against the key's kind), once.
 * `toCryptoKey` is synchronous, so compile steps need no promise to hold their keys.
 */
export function importKey(kid: string | null, material: KeyObject, algorithms: readonly JwsAlgorithm[], fingerprint: string): VerificationKey {
  const kind = kindOf(material);
  const byAlg = new Map<string, webcrypto.CryptoKey>();
  for (const alg of algorithms) {
    if (KIND_OF[alg] !== kind) throw new KeyError(`algorithm ${alg} cannot be used with a ${kind} key`);
    byAlg.set(alg, material.toCryptoKey(webAlgorithm(alg) as webcrypto.AlgorithmIdentifier, false, ['verify']) as webcrypto.CryptoKey);
  }
  if (byAlg.size === 0) throw new KeyError(`no algorithm of the provider fits this ${kind} key`);
  const bits = kind === 'secret' ? (material.symmetricKeySize ?? 0) * 8 : kind === 'rsa' ? (material.asymmetricKeyDetails?.modulusLength ?? 0) : 0;
  if (kind === 'rsa' && bits < 2048) throw new KeyError(`RSA keys must have at least 2048 bits, this one has ${bits}`);
  return { kid, kind, byAlg, bits, fingerprint };
}

export type SecretEncoding = 'utf8' | 'base64' | 'base64url' | 'hex';

export function secretKey(secret: string, encoding: SecretEncoding): KeyObject {
  const bytes = Buffer.from(secret, encoding);
  if (bytes.length === 0) throw new KeyError('empty secret');
  return createSecretKey(bytes);
}

/** A public key from PEM (SPKI, PKCS#1, a certificate, or a private key whose public half is taken) or JWK JSON. */
export function publicKey(text: string): KeyObject {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let jwk: Record<string, unknown>;
    try {
      jwk = JSON.parse(trimmed) as Record<string, unknown>;
    } catch {
      throw new KeyError('invalid JWK JSON');
    }
    return jwkPublicKey(jwk);
  }
  try {
    return createPublicKey(trimmed);
  } catch (err) {
    throw new KeyError(`invalid public key: ${(err as Error).message}`);
  }
}

/** A public key from a JWK object; symmetric (`oct`) keys are refused: a key set never carries secrets. */
export function jwkPublicKey(jwk: Record<string, unknown>): KeyObject {
  if (jwk.kty === 'oct') throw new KeyError('symmetric JWK keys are not accepted as public keys');
  // Only the public members are read: a JWK with private members still yields its public half.
  const pub: Record<string, unknown> = { kty: jwk.kty };
  for (const m of ['n', 'e', 'crv', 'x', 'y']) if (jwk[m] !== undefined) pub[m] = jwk[m];
  try {
    return createPublicKey({ key: pub as unknown as import('node:crypto').JsonWebKey, format: 'jwk' });
  } catch (err) {
    throw new KeyError(`invalid JWK: ${(err as Error).message}`);
  }
}

export function fingerprintOf(key: KeyObject): string {
  if (key.type === 'secret') {
    return 'secret:' + createHashHex(key.export());
  }
  return createHashHex(key.export({ type: 'spki', format: 'der' }));
}

import { createHash } from 'node:crypto';
function createHashHex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 32);
}
