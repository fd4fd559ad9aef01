// The OpenID Provider as the gateway talks to it, through openid-client (v6): discovery of
// /.well-known/openid-configuration (retried in the background until it works), the authorization URL
// (code flow, PKCE S256, state, nonce), the code exchange and refresh grants with the ID token's signature
// checked against the provider's JWKS (non-repudiation checks), its algorithm pinned, and iss, aud, exp,
// iat and nonce checked with the policy's clock skew, and the RP-initiated logout URL. Failures are
// sorted into what the provider refused, what it could not answer, and what did not verify.
import { rootCertificates } from 'node:tls';
import { createRequire } from 'node:module';
import type * as Undici from 'undici';
import { undici } from '../../proxy/undici.ts';
import type { Logger } from 'pino';
import type * as Oidc from 'openid-client';

const requireModule = createRequire(import.meta.url);
let lib: typeof Oidc | null = null;

export interface OidcClientOptions {
  provider: string;
  issuer: URL;
  clientId: string;
  clientSecret: string | null;
  /** private_key_jwt client authentication: a PKCS#8 PEM and its algorithm. */
  privateKey: { pem: string; algorithm: string; kid: string | null } | null;
  idTokenAlgorithm: string;
  clockSkewSeconds: number;
  ca: string | undefined;
  timeoutMs: number;
  log: Logger;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string | null;
  idToken: string | null;
  /** Verified ID token claims; null when the response had no ID token (a refresh may omit it). */
  claims: Record<string, unknown> | null;
  /** Seconds the access token lives, when the provider said. */
  expiresIn: number | null;
}

/** Why a grant failed: the provider refused it (`error`), could not be reached, or answered what did not verify. */
export type GrantFailure = { kind: 'rejected'; error: string } | { kind: 'unavailable'; message: string } | { kind: 'invalid'; message: string };

export function classify(err: unknown): GrantFailure {
  const o = lib!;
  if (err instanceof o.ResponseBodyError) return { kind: 'rejected', error: err.error };
  if (err instanceof o.AuthorizationResponseError) return { kind: 'rejected', error: err.error };
  const name = (err as { name?: string } | null)?.name;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof TypeError || name === 'TimeoutError' || name === 'AbortError') return { kind: 'unavailable', message };
  if (err instanceof o.ClientError && (err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || err.code === 'OAUTH_RESPONSE_IS_NOT_JSON')) return { kind: 'unavailable', message };
  // openid-client wraps the precise failure (unexpected alg, iss, aud, nonce...) in `cause`.
  const cause = (err as { cause?: unknown }).cause;
  const why = cause instanceof Error && cause.message !== message ? `${message}: ${cause.message}` : message;
  return { kind: 'invalid', message: (err as { code?: string }).code ? `${(err as { code?: string }).code}: ${why}` : why };
}

export class OidcClient {
  readonly #o: OidcClientOptions;
  readonly #agent: Undici.Agent;
  #config: Oidc.Configuration | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #attempts = 0;
  lastError: string | null = null;

  constructor(options: OidcClientOptions) {
    lib ??= requireModule('openid-client') as typeof Oidc;
    this.#o = options;
    this.#agent = new (undici().Agent)({ connect: { ca: options.ca !== undefined ? [...rootCertificates, options.ca] : undefined, timeout: options.timeoutMs }, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  }

  /** The discovered configuration, or null until discovery worked. */
  get config(): Oidc.Configuration | null {
    return this.#config;
  }

  /** First discovery (deferred one turn so a policy only validated never calls out); retried until it works. */
  async start(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#closed) return;
    await this.#discover();
  }

  async #discover(): Promise<void> {
    const o = lib!;
    const opts = this.#o;
    let auth: Oidc.ClientAuth | undefined;
    try {
      if (opts.privateKey !== null) {
        const jose = requireModule('jose') as typeof import('jose');
        const key = await jose.importPKCS8(opts.privateKey.pem, opts.privateKey.algorithm);
        auth = o.PrivateKeyJwt(opts.privateKey.kid !== null ? { key: key as Oidc.CryptoKey, kid: opts.privateKey.kid } : (key as Oidc.CryptoKey));
      } else if (opts.clientSecret !== null) {
        auth = o.ClientSecretBasic(opts.clientSecret);
      } else {
        auth = o.None();
      }
      const metadata: Partial<Oidc.ClientMetadata> = {
        id_token_signed_response_alg: opts.idTokenAlgorithm,
        [o.clockTolerance]: opts.clockSkewSeconds,
      };
      const agent = this.#agent;
      const execute = [o.enableNonRepudiationChecks];
      if (opts.issuer.protocol === 'http:') execute.push(o.allowInsecureRequests);
      this.#config = await o.discovery(opts.issuer, opts.clientId, metadata, auth, {
        execute,
        timeout: Math.ceil(opts.timeoutMs / 1000),
        [o.customFetch]: ((url: string, init: Record<string, unknown>) => undici().fetch(url, { ...init, dispatcher: agent } as Parameters<typeof Undici.fetch>[1])) as unknown as Oidc.CustomFetch,
      });
      this.lastError = null;
      opts.log.info({ provider: opts.provider, issuer: opts.issuer.href }, 'OpenID Provider discovered');
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.#attempts++;
      const wait = Math.min(30_000, 500 * 2 ** Math.min(this.#attempts, 6));
      opts.log.warn({ provider: opts.provider, issuer: opts.issuer.href, err: this.lastError, retry_ms: wait }, 'OpenID Provider discovery failed; retrying');
      if (!this.#closed) {
        this.#timer = setTimeout(() => void this.#discover(), wait);
        this.#timer.unref();
      }
    }
  }

  authorizationUrl(params: Record<string, string>): URL {
    return lib!.buildAuthorizationUrl(this.#config!, params);
  }

  /** The code exchange: `currentUrl` is the callback URL as the browser requested it. */
  async exchange(currentUrl: URL, checks: { verifier: string; state: string; nonce: string }): Promise<Tokens | GrantFailure> {
    try {
      const r = await lib!.authorizationCodeGrant(this.#config!, currentUrl, { pkceCodeVerifier: checks.verifier, expectedState: checks.state, expectedNonce: checks.nonce, idTokenExpected: true });
      return tokensOf(r);
    } catch (err) {
      return classify(err);
    }
  }

  async refresh(refreshToken: string): Promise<Tokens | GrantFailure> {
    try {
      return tokensOf(await lib!.refreshTokenGrant(this.#config!, refreshToken));
    } catch (err) {
      return classify(err);
    }
  }

  /** RP-initiated logout at the provider's end_session_endpoint, or null when it has none. */
  endSessionUrl(params: Record<string, string>): URL | null {
    if (this.#config?.serverMetadata().end_session_endpoint === undefined) return null;
    return lib!.buildEndSessionUrl(this.#config, params);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#agent.close().catch(() => undefined);
  }
}

export function randomChecks(): { state: string; nonce: string; verifier: string } {
  return { state: lib!.randomState(), nonce: lib!.randomNonce(), verifier: lib!.randomPKCECodeVerifier() };
}

export function pkceChallenge(verifier: string): Promise<string> {
  return lib!.calculatePKCECodeChallenge(verifier);
}

function tokensOf(r: Oidc.TokenEndpointResponse & Oidc.TokenEndpointResponseHelpers): Tokens {
  const claims = r.claims();
  return {
    accessToken: r.access_token,
    refreshToken: r.refresh_token ?? null,
    idToken: r.id_token ?? null,
    claims: claims !== undefined ? { ...(claims as Record<string, unknown>) } : null,
    expiresIn: r.expiresIn() ?? null,
  };
}
