// Authentication: the `auth` section names providers (JWT verification or an external forward-auth
// service) and a default; each route uses the default, names a provider, or says `auth: none`. Without an
// `auth` section routes are unauthenticated (development); with providers but no `default`, every route
// must say which it uses; `default: none` leaves silent routes open in development only: production mode
// refuses any route that is not authenticated and does not say `auth: none` explicitly. Client-sent copies of every header a provider
// sets upstream are removed on every route, authenticated or not.
import { array, either, object, optional, record, string, withDefault, type Infer, type Path } from '../config/schema.ts';
import { anyOf } from '../auth/any-of.ts';
import type { AuthProvider } from '../auth/provider.ts';
import { API_KEY_REASONS, apiKeyProviderSchema, createApiKeyProvider } from './api-key.ts';
import { CLIENT_CERT_REASONS, clientCertProviderSchema, createClientCertProvider } from './client-cert.ts';
import { createForwardProvider, FORWARD_AUTH_REASONS, forwardProviderSchema } from './forward-auth.ts';
import { createJwtProvider, JWT_REASONS, jwtProviderSchema } from './jwt.ts';
import { createOidcProvider, OIDC_REASONS, oidcProviderSchema } from './oidc.ts';
import { defineFilter, type CompileEnv } from '../contract/filter.ts';

const NAME = /^[A-Za-z0-9_.-]+$/;

const providerRef = either(
  string({ pattern: NAME, patternName: 'provider name (or none)', description: '`none`, or a provider name.' }),
  object({
    provider: optional(string({ pattern: NAME, patternName: 'provider name', description: 'Name of a provider under auth.providers.' })),
    any_of: optional(array(string({ pattern: NAME, patternName: 'provider name' }), { minItems: 2, description: 'JWT providers (each with its issuer) whose tokens this route accepts; chosen by the token\'s iss.' })),
  }, {
    check(v, path, issues) {
      if ((v.provider === undefined) === (v.any_of === undefined)) issues.push({ path, message: 'give exactly one of "provider", "any_of"' });
    },
  }),
  { description: '`none`, a provider name, `{ provider: NAME }` or `{ any_of: [NAME, ...] }`.' },
);
type ProviderRef = Infer<typeof providerRef>;

const providerSchema = object(
  {
    jwt: optional(jwtProviderSchema),
    forward: optional(forwardProviderSchema),
    oidc: optional(oidcProviderSchema),
    api_key: optional(apiKeyProviderSchema),
    client_cert: optional(clientCertProviderSchema),
  },
  {
    description: 'An authentication provider: exactly one of `jwt`, `forward`, `oidc`, `api_key`, `client_cert`.',
    check(v, path, issues) {
      if ([v.jwt, v.forward, v.oidc, v.api_key, v.client_cert].filter((x) => x !== undefined).length !== 1) issues.push({ path, message: 'give exactly one of "jwt", "forward", "oidc", "api_key", "client_cert"' });
    },
  },
);

export const authSchema = object({
  default: optional(providerRef),
  providers: withDefault(record(providerSchema, { keyPattern: NAME, description: 'Named providers; several issuers may stand side by side.' }), {}),
}, { description: 'Authentication providers and the default of every route.' });

export type AuthConfig = Infer<typeof authSchema>;

interface AuthShared {
  providers: ReadonlyMap<string, AuthProvider>;
  /** Provider of routes that do not say, or null (unauthenticated). */
  defaultProvider: AuthProvider | null;
  /** Every header any provider sets upstream: stripped from client requests on unauthenticated routes. */
  ownedHeaders: readonly string[];
  /** Providers are defined but `default` is absent: every route must say `auth: ...` itself. */
  mustChoose: boolean;
}

// Which provider each route of the policy being compiled uses, for `authorize` (compiled right after).
const routeProviders = new WeakMap<CompileEnv, Map<string, AuthProvider | null | 'invalid'>>();

/** The provider of the route at `routePath` in the policy `env` compiles: null when unauthenticated. */
export function providerOfRoute(env: CompileEnv, routePath: Path): AuthProvider | null | 'invalid' {
  return routeProviders.get(env)?.get(String(routePath)) ?? null;
}

function refName(ref: ProviderRef): string {
  return typeof ref === 'string' ? ref : ref.provider ?? `any_of(${ref.any_of!.join(',')})`;
}

export const auth = defineFilter<AuthConfig, ProviderRef, AuthShared>({
  name: 'auth',
  reasons: [...new Set([...JWT_REASONS, ...FORWARD_AUTH_REASONS, ...OIDC_REASONS, ...API_KEY_REASONS, ...CLIENT_CERT_REASONS])],
  stage: 'route',
  globalKey: 'auth',
  globalSchema: authSchema,
  routeKey: 'auth',
  routeSchema: providerRef,
  setup(config, env) {
    routeProviders.set(env, new Map());
    const providers = new Map<string, AuthProvider>();
    if (config === undefined) return { providers, defaultProvider: null, ownedHeaders: [], mustChoose: false };
    for (const [name, p] of Object.entries(config.providers)) {
      if (name === 'none') {
        env.problem(['auth', 'providers', name], '"none" is reserved (it means: no authentication)', true);
        continue;
      }
      const path = ['auth', 'providers', name];
      providers.set(
        name,
        p.jwt !== undefined ? createJwtProvider(name, p.jwt, [...path, 'jwt'], env)
          : p.oidc !== undefined ? createOidcProvider(name, p.oidc, [...path, 'oidc'], env)
            : p.api_key !== undefined ? createApiKeyProvider(name, p.api_key, [...path, 'api_key'], env)
            : p.client_cert !== undefined ? createClientCertProvider(name, p.client_cert, [...path, 'client_cert'], env)
            : createForwardProvider(name, p.forward!, [...path, 'forward'], env),
      );
    }
    let defaultProvider: AuthProvider | null = null;
    if (config.default !== undefined && refName(config.default) !== 'none') {
      defaultProvider = resolve(config.default, providers, ['auth', 'default'], env);
    }
    const ownedHeaders = [...new Set([...providers.values()].flatMap((p) => p.ownedHeaders))];
    return { providers, defaultProvider, ownedHeaders, mustChoose: config.default === undefined && providers.size > 0 };
  },
  compile({ config, shared, routePath }, env) {
    const registry = routeProviders.get(env)!;
    let provider: AuthProvider | null;
    if (config === undefined) {
      provider = shared.defaultProvider;
      if (provider === null && shared.mustChoose) {
        // Providers exist but no default: a route that says nothing would be open by mistake.
        env.problem(routePath, 'route does not say how it is authenticated: give it `auth: PROVIDER` or `auth: none`, or set auth.default');
      } else if (provider === null && env.mode === 'production') {
        env.problem(routePath, 'production: this route is not authenticated; give it `auth: { provider: NAME }`, set auth.default, or say `auth: none` explicitly');
      }
    } else if (refName(config) === 'none') {
      provider = null;
    } else {
      provider = resolve(config, shared.providers, [...routePath, 'auth'], env);
      if (provider === null) {
        registry.set(String(routePath), 'invalid');
        return null;
      }
    }
    registry.set(String(routePath), provider);
    if (provider === null) {
      const owned = shared.ownedHeaders;
      if (owned.length === 0) return null;
      return {
        name: 'auth',
        onRequest(ctx) {
          const up = ctx.upstreamHeaders;
          for (let i = 0; i < owned.length; i++) delete up[owned[i]!];
          return undefined;
        },
        onResponse: null,
        describe: () => ({ provider: 'none', strips: owned }),
      };
    }
    const p = provider;
    const others = shared.ownedHeaders.filter((h) => !p.ownedHeaders.includes(h));
    const authenticate = p.authenticate;
    return {
      name: p.filterName,
      onRequest: others.length === 0 ? authenticate : (ctx) => {
        const up = ctx.upstreamHeaders;
        for (let i = 0; i < others.length; i++) delete up[others[i]!];
        return authenticate(ctx);
      },
      onResponse: null,
      explainable: p.explainable ?? true,
      describe: () => p.describe(),
    };
  },
});

/** The provider a reference names (or the any_of composite), reporting unknown names at `path`. */
function resolve(ref: ProviderRef, providers: ReadonlyMap<string, AuthProvider>, path: Path, env: CompileEnv): AuthProvider | null {
  if (typeof ref === 'string' || ref.provider !== undefined) {
    const name = typeof ref === 'string' ? ref : ref.provider!;
    const p = providers.get(name);
    if (p === undefined) env.problem(path, `unknown provider "${name}"${known(providers)}`);
    return p ?? null;
  }
  const list: AuthProvider[] = [];
  for (const name of ref.any_of!) {
    const p = providers.get(name);
    if (p === undefined) env.problem([...path, 'any_of'], `unknown provider "${name}"${known(providers)}`);
    else list.push(p);
  }
  if (list.length !== ref.any_of!.length) return null;
  return anyOf(ref.any_of!.join('|'), list, (message) => env.problem([...path, 'any_of'], message));
}

function known(providers: ReadonlyMap<string, unknown>): string {
  return providers.size ? ` (known: ${[...providers.keys()].join(', ')})` : ' (no providers are defined under auth.providers)';
}
