// One route accepting tokens of several JWT providers (several issuers): the token is taken from any of
// their sources, looked up in each provider's verified-token cache, and otherwise verified by the one
// provider whose `issuer` names the token's (unverified) `iss`. That provider then checks everything,
// `iss` included, with its own keys: the unverified read only chooses whose keys to try.
import { parseStrictJson } from './json.ts';
import { AMBIGUOUS, type AuthProvider, type BearerSteps, type Grants } from './provider.ts';
import { tokenKey } from './token-cache.ts';
import type { Deny, Verdict } from '../contract/filter.ts';
import type { RequestContext } from '../contract/context.ts';

function unverifiedIssuer(token: string): string | null {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first < 0 || second < 0) return null;
  try {
    const payload = parseStrictJson(Buffer.from(token.slice(first + 1, second), 'base64url').toString('utf8')) as { iss?: unknown } | null;
    return payload !== null && typeof payload === 'object' && typeof payload.iss === 'string' ? payload.iss : null;
  } catch {
    return null;
  }
}

/** Builds the composite; `problem` is called for providers that cannot take part. */
export function anyOf(name: string, providers: readonly AuthProvider[], problem: (message: string) => void): AuthProvider | null {
  const steps: BearerSteps[] = [];
  const byIssuer = new Map<string, { p: AuthProvider; s: BearerSteps }>();
  for (const p of providers) {
    if (p.bearer === undefined) {
      problem(`provider "${p.name}" is not a JWT provider; only JWT providers can be combined with any_of`);
      continue;
    }
    if (p.bearer.issuers === null) {
      problem(`provider "${p.name}" has no issuer; any_of chooses the provider by the token's iss`);
      continue;
    }
    for (const iss of p.bearer.issuers) {
      const other = byIssuer.get(iss);
      if (other) problem(`issuer "${iss}" belongs to both "${other.p.name}" and "${p.name}"`);
      else byIssuer.set(iss, { p, s: p.bearer });
    }
    steps.push(p.bearer);
  }
  if (steps.length !== providers.length) return null;
  const first = steps[0]!;
  const owned = [...new Set(providers.flatMap((p) => p.ownedHeaders))];
  const maxSize = Math.max(...steps.map((s) => s.maxSize));
  const issuerOf = new WeakMap<object, AuthProvider>();

  function authenticate(ctx: RequestContext): Verdict | Promise<Verdict> {
    const up = ctx.upstreamHeaders;
    for (let i = 0; i < owned.length; i++) delete up[owned[i]!];
    let token: string | null = null;
    for (const s of steps) {
      const t = s.extract(ctx);
      if (t === null) continue;
      if (t === AMBIGUOUS || (token !== null && token !== t)) return first.deny('token_ambiguous');
      token = t;
    }
    if (token === null) return first.deny('token_missing');
    if (token.length > maxSize) return first.deny('token_too_large');
    const key = tokenKey(token);
    for (const s of steps) if (s.fromCache(ctx, key)) return undefined;
    const iss = unverifiedIssuer(token);
    const chosen = iss === null ? undefined : byIssuer.get(iss);
    if (chosen === undefined) return first.deny(iss === null ? 'token_malformed' : 'token_issuer_invalid');
    const v = chosen.s.verify(ctx, token, key);
    return v;
  }

  return {
    name,
    filterName: 'jwt',
    authenticate,
    grants(claims): Grants {
      // Claims carry the issuer that verified them; its provider knows where roles and scopes are.
      let p = issuerOf.get(claims);
      if (p === undefined) {
        p = (typeof claims.iss === 'string' ? byIssuer.get(claims.iss)?.p : undefined) ?? providers[0]!;
        issuerOf.set(claims, p);
      }
      return p.grants(claims);
    },
    carries: { roles: true, scopes: true },
    ownedHeaders: owned,
    forbidden: (reason: string): Deny => providers[0]!.forbidden(reason),
    describe: () => ({ any_of: providers.map((p) => p.describe()) }),
  };
}
