// A real OpenID Provider for tests: node-oidc-provider on a free loopback port with its development login
// screen (any login name, any password), one confidential client, refresh tokens always issued, access
// tokens of a lifetime the test chooses, RP-initiated logout, and grants given without a consent screen
// (a first-party app). Accounts: the login name is the subject; alice and carol are staff at example.com,
// `bob` has no allowed group, `eve` an email at another domain.
import { createServer, request as httpRequest, type Server } from 'node:http';
import { freePort } from './redis-server.ts';

export interface TestOp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Every request path the provider received (token and discovery calls included), in order. */
  requests: string[];
  /** Token endpoint calls by grant type. */
  grants: string[];
  /** Revokes a refresh token at the provider (token revocation, RFC 7009), as an admin ending a user's access would. */
  revoke(token: string): Promise<number>;
  close(): Promise<void>;
}

export interface TestOpOptions {
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  accessTokenTtl?: number;
  port?: number;
  /** Also register client `portcullis-pkjwt`, authenticating with private_key_jwt signed by this key. */
  clientJwk?: Record<string, unknown>;
}

export async function startOp(o: TestOpOptions): Promise<TestOp> {
  const { default: Provider } = (await import('oidc-provider' as string)) as { default: new (issuer: string, config: unknown) => any };
  const port = o.port ?? (await freePort());
  const issuer = `http://127.0.0.1:${port}`;
  const clientId = 'portcullis-test';
  const clientSecret = 'a-client-secret-for-tests-only-0123456789';
  const accounts: Record<string, Record<string, unknown>> = {
    alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Liddell', groups: ['staff', 'admins'] },
    // a member of many groups: her ID token (and so her session) is larger than one cookie holds
    dave: { email: 'dave@example.com', email_verified: true, name: 'Dave', groups: ['staff', ...Array.from({ length: 150 }, (_, i) => `project-${String(i).padStart(3, '0')}-team`)] },
    carol: { email: 'carol@example.com', email_verified: true, name: 'Carol', groups: ['staff'] },
    bob: { email: 'bob@example.com', email_verified: true, name: 'Bob', groups: ['visitors'] },
    eve: { email: 'eve@evil.test', email_verified: true, name: 'Eve', groups: ['staff'] },
  };
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: o.redirectUris,
      post_logout_redirect_uris: o.postLogoutRedirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }, ...(o.clientJwk === undefined ? [] : [{
      client_id: 'portcullis-pkjwt',
      redirect_uris: o.redirectUris,
      post_logout_redirect_uris: o.postLogoutRedirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks: { keys: [o.clientJwk] },
    }])],
    async findAccount(_ctx: unknown, id: string) {
      return { accountId: id, async claims() { return { sub: id, ...(accounts[id] ?? { email: `${id}@example.com`, email_verified: true, groups: [] }) }; } };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    conformIdTokenClaims: false, // scope claims go into the ID token (what the gateway reads)
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true }, revocation: { enabled: true } },
    pkce: { required: () => true },
    issueRefreshToken: async () => true,
    ttl: { AccessToken: o.accessTokenTtl ?? 3600, IdToken: 3600, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600, AuthorizationCode: 60 },
    cookies: { keys: ['op-cookie-key-for-tests-0123456789abcdef'] },
    async loadExistingGrant(ctx: any) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const g = await ctx.oidc.provider.Grant.find(grantId);
        if (g) return g;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid email profile groups offline_access');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
      await grant.save();
      return grant;
    },
  });
  provider.on('server_error', (_ctx: unknown, err: Error) => console.error('OP server_error', err));
  const requests: string[] = [];
  const grants: string[] = [];
  const callback = provider.callback();
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.method === 'POST' && req.url === '/token') {
      // the grant type is in the form body: peek without consuming it for the provider
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const type = new URLSearchParams(Buffer.concat(chunks).toString()).get('grant_type');
        if (type) grants.push(type);
      });
    }
    callback(req, res);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return {
    issuer,
    clientId,
    clientSecret,
    requests,
    grants,
    async revoke(token: string) {
      const r = await fetch(`${issuer}/token/revocation`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'refresh_token' }).toString(),
      });
      return r.status;
    },
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}


/** A minimal browser for scripted flows: a cookie jar per host:port and manual redirects. */
export class Browser {
  readonly jar = new Map<string, Map<string, string>>();

  cookies(url: string): Map<string, string> {
    const host = new URL(url).host;
    let j = this.jar.get(host);
    if (j === undefined) this.jar.set(host, (j = new Map()));
    return j;
  }

  async request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Headers; body: string; location: string | null; setCookies: string[] }> {
    const jar = this.cookies(url);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    // node:http, not fetch: fetch sets Sec-Fetch-Mode itself, and a navigation must say `navigate`.
    const r = await new Promise<{ status: number; headers: Headers; text: string }>((resolve, reject) => {
      const req = httpRequest(url, { method: init.method ?? 'GET', headers: { ...(cookie ? { cookie } : {}), ...init.headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) h.append(k, one);
          resolve({ status: res.statusCode ?? 0, headers: h, text: Buffer.concat(chunks).toString('utf8') });
        });
      });
      req.on('error', reject);
      req.end(init.body);
    });
    const setCookies = r.headers.getSetCookie();
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || /expires=Thu, 01 Jan 1970/i.test(line)) jar.delete(name);
      else jar.set(name, value);
    }
    const loc = r.headers.get('location');
    return { status: r.status, headers: r.headers, body: r.text, location: loc === null ? null : new URL(loc, url).href, setCookies };
  }

  /** A top-level navigation as a browser makes it. */
  navigate(url: string): ReturnType<Browser['request']> {
    return this.request(url, { headers: { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate' } });
  }

  /** Follows redirects from `url` until a non-redirect answer or a URL `stop` accepts. */
  async follow(url: string, stop: (url: string) => boolean = () => false): Promise<{ url: string; status: number; body: string }> {
    let current = url;
    for (let i = 0; i < 20; i++) {
      const r = await this.navigate(current);
      if (r.location === null || r.status < 300 || r.status > 399) return { url: current, status: r.status, body: r.body };
      current = r.location;
      if (stop(current)) return { url: current, status: r.status, body: r.body };
    }
    throw new Error('too many redirects');
  }
}

/**
 * Signs `login` in at the test provider, starting from a protected gateway URL: follows the redirect to
 * the provider, submits its login form, and stops at the gateway callback URL (not requested yet).
 */
export async function loginAtOp(b: Browser, protectedUrl: string, op: TestOp, login: string): Promise<string> {
  const first = await b.navigate(protectedUrl);
  if (first.status !== 302 || first.location === null || !first.location.startsWith(op.issuer)) throw new Error(`expected a redirect to the provider, got ${first.status} ${first.location}`);
  const atForm = await b.follow(first.location);
  const action = /action="([^"]+)"/.exec(atForm.body)?.[1];
  if (action === undefined) throw new Error(`no login form at ${atForm.url}: ${atForm.body.slice(0, 300)}`);
  const submitted = await b.request(new URL(action, atForm.url).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ prompt: 'login', login, password: 'any' }).toString(),
  });
  if (submitted.location === null) throw new Error(`login form answered ${submitted.status}: ${submitted.body.slice(0, 300)}`);
  const origin = new URL(protectedUrl).origin;
  const end = await b.follow(submitted.location, (u) => u.startsWith(origin));
  if (!end.url.startsWith(origin)) throw new Error(`the provider did not send the browser back: ${end.url} ${end.status} ${end.body.slice(0, 300)}`);
  return end.url;
}
