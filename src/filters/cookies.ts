// Set-Cookie rewriting: the upstream's cookies leave with the flags the policy demands. `HttpOnly`
// (except for cookies scripts must read, e.g. a double-submit CSRF cookie), `Secure` when the public URL
// is https (or, without `public_url`, when the client's connection is), `SameSite` at least as strict as
// the policy's, and the `__Host-` / `__Secure-` prefix rules. The name=value pair is never changed.
import { array, object, oneOf, optional, string, url, withDefault, type Infer, type Path } from '../config/schema.ts';
import { trimOws } from '../proxy/cookie.ts';
import { namedPolicies, policyRef, resolveRef } from './policy-ref.ts';
import { defineFilter, type CompileEnv } from '../contract/filter.ts';

const COOKIE_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const cookiePolicySchema = object(
  {
    http_only: withDefault(oneOf(['always', 'keep'] as const, { description: 'always: add HttpOnly to every cookie not listed in script_readable; keep: leave it as the upstream set it.' }), 'always'),
    script_readable: withDefault(array(string({ pattern: COOKIE_NAME, patternName: 'cookie name' }), { single: true, description: 'Cookies left without HttpOnly (a double-submit CSRF cookie).' }), []),
    secure: withDefault(oneOf(['auto', 'always', 'keep'] as const, { description: 'auto: Secure when public_url is https (or, without it, when the request came over https); always; keep.' }), 'auto'),
    public_url: optional(url({ protocols: ['http:', 'https:'], description: 'The URL clients use (e.g. ${env:BASE_URL}); decides Secure in auto mode.' })),
    same_site: withDefault(oneOf(['strict', 'lax', 'none', 'keep'] as const, { description: 'Minimum SameSite: a stricter upstream value is kept; none also forces Secure.' }), 'lax'),
  },
  { description: 'A cookie-flags policy.' },
);

export type CookiePolicyConfig = Infer<typeof cookiePolicySchema>;

const SAME_SITE_RANK: Record<string, number> = { none: 0, lax: 1, strict: 2 };
const SAME_SITE_TEXT: Record<string, string> = { none: 'None', lax: 'Lax', strict: 'Strict' };

export interface CookieRules {
  httpOnly: boolean;
  readable: ReadonlySet<string>;
  /** true / false decided at compile time; null: decided by the request's scheme. */
  secure: boolean | null;
  keepSecure: boolean;
  sameSite: 'strict' | 'lax' | 'none' | 'keep';
}

export function compileCookiePolicy(config: CookiePolicyConfig, path: Path, env: CompileEnv): CookieRules {
  let secure: boolean | null = null;
  if (config.secure === 'always') secure = true;
  else if (config.secure === 'auto' && config.public_url !== undefined) secure = config.public_url.protocol === 'https:';
  if (env.mode === 'production' && config.secure === 'keep') {
    env.problem([...path, 'secure'], 'production: cookies must get Secure (use auto or always)');
  }
  if (env.mode === 'production' && config.secure === 'auto' && config.public_url?.protocol === 'http:') {
    env.problem([...path, 'public_url'], 'production: public_url is plain http, so cookies would be sent without Secure');
  }
  return {
    httpOnly: config.http_only === 'always',
    readable: new Set(config.script_readable),
    secure,
    keepSecure: config.secure === 'keep',
    sameSite: config.same_site,
  };
}

/**
 * Rewrites one Set-Cookie line. The first `;`-segment (name=value) is copied byte for byte; attributes the
 * policy owns are dropped and re-added.
 */
export function rewriteSetCookie(line: string, rules: CookieRules, https: boolean): string {
  const semi = line.indexOf(';');
  const pair = semi === -1 ? line : line.slice(0, semi);
  const eq = pair.indexOf('=');
  const name = trimOws(eq === -1 ? '' : pair.slice(0, eq));
  const attrs: string[] = [];
  let hasHttpOnly = false;
  let hasSecure = false;
  let sameSite: string | null = null;
  let path: string | null = null;
  if (semi !== -1) {
    for (const raw of line.slice(semi + 1).split(';')) {
      const attr = trimOws(raw);
      if (attr === '') continue;
      const aeq = attr.indexOf('=');
      const key = trimOws(aeq === -1 ? attr : attr.slice(0, aeq)).toLowerCase();
      const value = aeq === -1 ? '' : trimOws(attr.slice(aeq + 1));
      if (key === 'httponly') hasHttpOnly = true;
      else if (key === 'secure') hasSecure = true;
      else if (key === 'samesite') sameSite = value.toLowerCase();
      else if (key === 'path') path = value;
      else if (key === 'domain' && name.startsWith('__Host-')) continue; // __Host- cookies are host-only
      else attrs.push(attr);
    }
  }
  const hostPrefix = name.startsWith('__Host-');
  const prefixed = hostPrefix || name.startsWith('__Secure-');

  // Never weaker than the upstream: a Secure it set stays.
  let secure = hasSecure || (!rules.keepSecure && (rules.secure ?? https));
  let site: string | null = sameSite;
  if (rules.sameSite !== 'keep') {
    const current = sameSite === null ? -1 : SAME_SITE_RANK[sameSite] ?? -1;
    site = current >= SAME_SITE_RANK[rules.sameSite]! ? sameSite : rules.sameSite;
  }
  if (site === 'none' || prefixed) secure = true; // browsers drop SameSite=None and prefixed cookies without Secure
  const httpOnly = rules.httpOnly ? !rules.readable.has(name) || hasHttpOnly : hasHttpOnly;

  let out = pair;
  if (hostPrefix) out += '; Path=/';
  else if (path !== null) out += `; Path=${path}`;
  for (const a of attrs) out += `; ${a}`;
  if (secure) out += '; Secure';
  if (httpOnly) out += '; HttpOnly';
  if (site !== null) out += `; SameSite=${SAME_SITE_TEXT[site] ?? site}`;
  return out;
}

export const cookies = defineFilter<Record<string, CookiePolicyConfig>, string | CookiePolicyConfig, Map<string, CookieRules>>({
  name: 'cookies',
  reasons: [],
  stage: 'route',
  globalKey: 'cookies',
  globalSchema: namedPolicies(cookiePolicySchema, 'Named cookie-flag policies, referenced by routes as `cookies: NAME`; one named `default` applies to routes that name none.'),
  routeKey: 'cookies',
  routeSchema: policyRef(cookiePolicySchema, 'Cookie-flag policy of the route: a name, an inline policy, or none.'),
  setup(config, env) {
    const out = new Map<string, CookieRules>();
    for (const [name, policy] of Object.entries(config ?? {})) out.set(name, compileCookiePolicy(policy, ['cookies', name], env));
    return out;
  },
  compile({ config, shared, routePath }, env) {
    const chosen = config === undefined && shared.has('default') ? 'default' : config;
    const rules = resolveRef(chosen, shared, (c, p) => compileCookiePolicy(c, p, env), [...routePath, 'cookies'], env, 'cookies');
    if (rules === null) return null;
    return {
      name: 'cookies',
      onRequest: null,
      onResponse(ctx, head) {
        const value = head.headers['set-cookie'];
        if (value === undefined) return;
        const https = ctx.scheme === 'https';
        head.headers['set-cookie'] = Array.isArray(value) ? value.map((line) => rewriteSetCookie(line, rules, https)) : rewriteSetCookie(value, rules, https);
      },
      describe: () => ({
        http_only: rules.httpOnly ? 'always' : 'keep',
        script_readable: [...rules.readable],
        secure: rules.keepSecure ? 'keep' : rules.secure === null ? 'when the request is https' : rules.secure,
        same_site: rules.sameSite,
      }),
    };
  },
});
