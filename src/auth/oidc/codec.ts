// The session cookie codec: JSON payloads sealed as compact JWE (`dir` + A256GCM via jose), so a cookie is
// both secret (refresh tokens never reach the browser in the clear) and authenticated (a changed byte fails
// the GCM tag). Keys come from the policy's cookie secrets by HKDF, one key per purpose (session, login
// state) and provider: a login-state cookie never opens as a session, provider A's cookie never opens at
// provider B. Several secrets overlap during a rotation: the first seals, every one opens (the JWE `kid`,
// a hash of the key, picks it). Every payload carries its own expiry (`exp`, seconds), checked on open.
import { createHash, hkdfSync } from 'node:crypto';
import { createRequire } from 'node:module';

const requireModule = createRequire(import.meta.url);
let jose: typeof import('jose') | null = null;

export type Purpose = 'session' | 'login';

/** Why a secret is too weak for a cookie key, or null. 32 bytes of reasonable variety are the floor. */
export function weakSecretProblem(secret: string): string | null {
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes < 32) return `has ${bytes * 8} bits, at least 256 are required (portcullis secrets generate)`;
  if (new Set(secret).size < 8) return 'has fewer than 8 distinct characters: not a random secret (portcullis secrets generate)';
  return null;
}

interface CodecKey {
  readonly kid: string;
  readonly key: Uint8Array;
}

export class SessionCodec {
  readonly #seal: Record<Purpose, CodecKey>;
  readonly #open: Record<Purpose, ReadonlyMap<string, Uint8Array>>;

  /** `secrets[0]` seals; all open. `context` binds the keys to one provider (its name). */
  constructor(secrets: readonly string[], context: string) {
    if (secrets.length === 0) throw new Error('at least one cookie secret is required');
    jose ??= requireModule('jose') as typeof import('jose');
    const derive = (secret: string, purpose: Purpose): CodecKey => {
      const key = new Uint8Array(hkdfSync('sha256', Buffer.from(secret, 'utf8'), 'portcullis-oidc-cookie', `${purpose}\0${context}`, 32));
      return { kid: createHash('sha256').update(key).digest('base64url').slice(0, 12), key };
    };
    const build = (purpose: Purpose) => {
      const keys = secrets.map((s) => derive(s, purpose));
      return { seal: keys[0]!, open: new Map(keys.map((k) => [k.kid, k.key])) };
    };
    const session = build('session');
    const login = build('login');
    this.#seal = { session: session.seal, login: login.seal };
    this.#open = { session: session.open, login: login.open };
  }

  /** Seals `payload` until `expiresAtMs` (stored as `exp` in seconds). */
  async seal(purpose: Purpose, payload: Record<string, unknown>, expiresAtMs: number): Promise<string> {
    const { kid, key } = this.#seal[purpose];
    const body = Buffer.from(JSON.stringify({ ...payload, exp: Math.ceil(expiresAtMs / 1000) }), 'utf8');
    return new jose!.CompactEncrypt(body).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid }).encrypt(key);
  }

  /**
   * The payload of a token this codec sealed for `purpose`, or a reason it is not one: `invalid` (not a
   * JWE, another key, tampered) or `expired` (authentic, but past its `exp` at `nowMs`).
   */
  async open(purpose: Purpose, token: string, nowMs = Date.now()): Promise<Record<string, unknown> | 'invalid' | 'expired'> {
    if (token.length > 64 * 1024) return 'invalid';
    const parts = token.split('.');
    if (parts.length !== 5 || parts[1] !== '') return 'invalid';
    let header: unknown;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    } catch {
      return 'invalid';
    }
    if (header === null || typeof header !== 'object') return 'invalid';
    const h = header as Record<string, unknown>;
    if (h.alg !== 'dir' || h.enc !== 'A256GCM' || typeof h.kid !== 'string' || Object.keys(h).length !== 3) return 'invalid';
    const key = this.#open[purpose].get(h.kid);
    if (key === undefined) return 'invalid';
    let plaintext: Uint8Array;
    try {
      ({ plaintext } = await jose!.compactDecrypt(token, key, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] }));
    } catch {
      return 'invalid';
    }
    let payload: unknown;
    try {
      payload = JSON.parse(Buffer.from(plaintext).toString('utf8'));
    } catch {
      return 'invalid';
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return 'invalid';
    const p = payload as Record<string, unknown>;
    if (typeof p.exp !== 'number') return 'invalid';
    if (nowMs >= p.exp * 1000) return 'expired';
    return p;
  }
}

// ---- cookies split past the browser limit ----

/**
 * Longest cookie value written in one piece. Browsers keep about 4096 bytes per cookie, name and attributes
 * included; the rest of the value goes to `NAME.1`, `NAME.2`, ... (`NAME.0` is the first piece then).
 */
export const COOKIE_CHUNK = 3800;
export const MAX_CHUNKS = 8;

export interface CookieAttributes {
  readonly secure: boolean;
  /** Max-Age in seconds, or null for a browser-session cookie. */
  readonly maxAge: number | null;
  readonly path: string;
  readonly sameSite: 'Lax' | 'Strict';
}

function attributes(a: CookieAttributes, maxAge: number | null): string {
  return `; Path=${a.path}${maxAge !== null ? `; Max-Age=${maxAge}` : ''}; HttpOnly${a.secure ? '; Secure' : ''}; SameSite=${a.sameSite}`;
}

/** The names of the cookie's pieces present in a Cookie header (for clearing them). */
export function presentChunks(names: Iterable<string>, name: string): Set<string> {
  const out = new Set<string>();
  const prefix = name + '.';
  for (const n of names) if (n === name || (n.startsWith(prefix) && /^\d$/.test(n.slice(prefix.length)))) out.add(n);
  return out;
}

/**
 * Set-Cookie lines that store `value` under `name` (split when long), and clear every other piece the
 * browser sent (`present`), so a shorter value never leaves a stale tail behind.
 */
export function setChunked(name: string, value: string, a: CookieAttributes, present: ReadonlySet<string>): string[] {
  const lines: string[] = [];
  const written = new Set<string>();
  if (value.length <= COOKIE_CHUNK) {
    lines.push(`${name}=${value}${attributes(a, a.maxAge)}`);
    written.add(name);
  } else {
    const n = Math.ceil(value.length / COOKIE_CHUNK);
    if (n > MAX_CHUNKS) throw new Error(`session cookie too large (${value.length} bytes)`);
    for (let i = 0; i < n; i++) {
      const piece = `${name}.${i}`;
      lines.push(`${piece}=${value.slice(i * COOKIE_CHUNK, (i + 1) * COOKIE_CHUNK)}${attributes(a, a.maxAge)}`);
      written.add(piece);
    }
  }
  for (const p of present) if (!written.has(p)) lines.push(`${p}=${attributes(a, 0)}`);
  return lines;
}

/** Set-Cookie lines that clear the cookie and every piece of it the browser sent. */
export function clearChunked(name: string, a: CookieAttributes, present: ReadonlySet<string>): string[] {
  const all = new Set(present);
  all.add(name);
  return [...all].map((p) => `${p}=${attributes(a, 0)}`);
}

/**
 * The cookie's value from its pieces: `name` alone, or `name.0`, `name.1`, ... joined in order (stopping at
 * the first missing one). `get` returns a cookie's one value, null when absent, undefined when ambiguous.
 */
export function readChunked(get: (name: string) => string | null | undefined, name: string): string | null | undefined {
  const whole = get(name);
  if (whole !== null) return whole;
  let out = '';
  for (let i = 0; i < MAX_CHUNKS; i++) {
    const piece = get(`${name}.${i}`);
    if (piece === undefined) return undefined;
    if (piece === null) break;
    out += piece;
  }
  return out === '' ? null : out;
}

/** Cookie names in a Cookie header (token names only). */
export function cookieNames(header: string | readonly string[] | undefined): string[] {
  if (header === undefined) return [];
  const text = typeof header === 'string' ? header : header.join('; ');
  const out: string[] = [];
  for (const pair of text.split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const n = pair.slice(0, eq).replace(/^[ \t]+|[ \t]+$/g, '');
    if (n !== '') out.push(n);
  }
  return out;
}
