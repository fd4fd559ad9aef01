// A remote JSON Web Key Set: fetched at start, refreshed in the background as its Cache-Control allows
// (clamped to the policy's min/max), re-fetched when a token names an unknown `kid` but at most once per
// interval (a flood of random kids costs the IdP one request per interval), and the last good set kept
// while the IdP is down.
import { rootCertificates } from 'node:tls';
import type { Agent } from 'undici';
import { undici } from '../proxy/undici.ts';
import type { Logger } from 'pino';
import { algorithmsFor, fingerprintOf, importKey, jwkPublicKey, kindOf, type JwsAlgorithm, type VerificationKey } from './keys.ts';

export interface KeySet {
  readonly byKid: ReadonlyMap<string, VerificationKey>;
  readonly all: readonly VerificationKey[];
  readonly fingerprint: string;
}

export function keySetOf(keys: readonly VerificationKey[]): KeySet {
  const byKid = new Map<string, VerificationKey>();
  for (const k of keys) if (k.kid !== null) byKid.set(k.kid, k);
  return { byKid, all: keys, fingerprint: keys.map((k) => `${k.kid}=${k.fingerprint}:${[...k.byAlg.keys()].join(',')}`).sort().join('|') };
}

export interface JwksOptions {
  provider: string;
  url: URL;
  ca: string | undefined;
  timeoutMs: number;
  minRefreshMs: number;
  maxRefreshMs: number;
  unknownKidIntervalMs: number;
  algorithms: readonly JwsAlgorithm[];
  log: Logger;
  /** Counts fetches by result: success, unchanged, failure. */
  count(result: 'success' | 'unchanged' | 'failure'): void;
  /** Called when a fetch brings a different key set (the token cache is cleared). */
  onChange(set: KeySet): void;
}

const MAX_JWKS_BYTES = 1024 * 1024;

export function maxAgeOf(cacheControl: string | string[] | undefined): number | undefined {
  const text = Array.isArray(cacheControl) ? cacheControl.join(',') : cacheControl;
  if (!text) return undefined;
  if (/(?:^|,)\s*(?:no-store|no-cache)\b/i.test(text)) return 0;
  const m = /(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*"?(\d+)/i.exec(text);
  return m ? Number(m[1]) * 1000 : undefined;
}

/** Parses a JWKS document into keys usable with `algorithms`; keys for encryption or other algorithms are skipped. */
export function parseJwks(doc: unknown, algorithms: readonly JwsAlgorithm[]): VerificationKey[] {
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys)) throw new Error('not a JWKS document (no "keys" list)');
  const out: VerificationKey[] = [];
  for (const raw of (doc as { keys: unknown[] }).keys) {
    if (raw === null || typeof raw !== 'object') continue;
    const jwk = raw as Record<string, unknown>;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    if (jwk.kty === 'oct') continue; // a remote key set never supplies shared secrets
    try {
      const material = jwkPublicKey(jwk);
      const kind = kindOf(material);
      let algs = algorithmsFor(kind, algorithms);
      if (typeof jwk.alg === 'string') algs = algs.filter((a) => a === jwk.alg);
      if (algs.length === 0) continue;
      out.push(importKey(typeof jwk.kid === 'string' ? jwk.kid : null, material, algs, fingerprintOf(material)));
    } catch {
      continue; // one unusable key does not spoil the set
    }
  }
  return out;
}

export class JwksSource {
  readonly #o: JwksOptions;
  readonly #agent: Agent;
  #set: KeySet | null = null;
  #inflight: Promise<boolean> | null = null;
  #lastAttempt = -Infinity;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  lastError: string | null = null;
  /** Epoch ms of the last fetch attempt and of the last successful one (the admin dashboard shows them). */
  lastAttemptAt: number | null = null;
  lastSuccessAt: number | null = null;

  constructor(options: JwksOptions) {
    this.#o = options;
    // An extra CA is trusted besides the system ones (Node's `ca` option alone would replace them).
    this.#agent = new (undici().Agent)({ connect: { ca: options.ca !== undefined ? [...rootCertificates, options.ca] : undefined, timeout: options.timeoutMs }, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  }

  /** The JWKS URL, password masked. */
  get url(): string {
    const u = new URL(this.#o.url.href);
    if (u.password) u.password = '********';
    return u.href;
  }

  get keys(): KeySet | null {
    return this.#set;
  }

  /** First fetch; resolves when it is done whether it worked or not (readiness says which). */
  async start(): Promise<void> {
    // Deferred one turn: a policy compiled only to be validated or explained (and closed at once) never
    // reaches out to the IdP.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#closed) return;
    await this.#fetch();
  }

  /**
   * A token named a kid the set lacks: fetch again unless a fetch happened less than the interval ago.
   * Returns null when rate-limited, else a promise of whether the fetch succeeded.
   */
  refetch(now = performance.now()): Promise<boolean> | null {
    if (this.#inflight !== null) return this.#inflight;
    if (now - this.#lastAttempt < this.#o.unknownKidIntervalMs) return null;
    return this.#fetch();
  }

  #fetch(): Promise<boolean> {
    if (this.#inflight !== null) return this.#inflight;
    this.#lastAttempt = performance.now();
    this.lastAttemptAt = Date.now();
    this.#inflight = this.#doFetch().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async #doFetch(): Promise<boolean> {
    let next = this.#o.minRefreshMs;
    try {
      const res = await undici().request(this.#o.url, {
        method: 'GET',
        dispatcher: this.#agent,
        headers: { accept: 'application/jwk-set+json, application/json' },
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`JWKS answered ${res.statusCode}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_JWKS_BYTES) throw new Error('JWKS document too large');
        chunks.push(chunk as Buffer);
      }
      const keys = parseJwks(JSON.parse(Buffer.concat(chunks).toString('utf8')), this.#o.algorithms);
      if (keys.length === 0) throw new Error('JWKS has no usable key');
      const set = keySetOf(keys);
      const maxAge = maxAgeOf(res.headers['cache-control']);
      next = Math.min(this.#o.maxRefreshMs, Math.max(this.#o.minRefreshMs, maxAge ?? this.#o.maxRefreshMs));
      this.lastError = null;
      this.lastSuccessAt = Date.now();
      if (this.#set === null || this.#set.fingerprint !== set.fingerprint) {
        const first = this.#set === null;
        this.#set = set;
        this.#o.count('success');
        if (!first) this.#o.log.info({ provider: this.#o.provider, keys: keys.length }, 'JWKS key set changed');
        this.#o.onChange(set);
      } else {
        this.#o.count('unchanged');
      }
      return true;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.#o.count('failure');
      this.#o.log.warn({ provider: this.#o.provider, err: this.lastError, kept_keys: this.#set?.all.length ?? 0 }, 'JWKS fetch failed; keeping the last good key set');
      return false;
    } finally {
      this.#schedule(next);
    }
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#fetch(), ms);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#agent.close().catch(() => undefined);
  }
}
