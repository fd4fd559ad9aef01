// Per-route authorization over the identity the route's auth provider verified: roles (any/all), scopes
// (any/all), claim values, and method rules per role (`user` may GET/HEAD, `admin` anything). Each
// refusal is a 403 with its own reason: role_missing, scope_missing, claim_mismatch,
// method_not_allowed_for_role. `mode: report` evaluates and records without denying.
import { array, dispatch, either, object, oneOf, optional, record, string, withDefault, type Infer, type Schema } from '../config/schema.ts';
import { claimAccessor, type AuthProvider } from '../auth/provider.ts';
import { providerOfRoute } from './auth.ts';
import { defineFilter, type Deny } from '../contract/filter.ts';
import { reportDeny } from '../contract/context.ts';

export const AUTHORIZE_REASONS = ['role_missing', 'scope_missing', 'claim_mismatch', 'method_not_allowed_for_role'] as const;
type Reason = (typeof AUTHORIZE_REASONS)[number];

const names = (description: string) => optional(array(string(), { single: true, minItems: 1, description }));
const METHOD = /^([A-Z]+|\*)$/;

const claimValue: Schema<string | string[]> = either(
  dispatch<string | string[]>('string or list', {}, (v) => (Array.isArray(v) ? array(string(), { minItems: 1 }) : string())),
  array(string(), { minItems: 1 }),
  { description: 'The value the claim must equal, or a list of values it must be one of.' },
);

export const authorizeSchema = object(
  {
    roles_any: names('The identity needs at least one of these roles.'),
    roles_all: names('The identity needs every one of these roles.'),
    scopes_any: names('The token needs at least one of these scopes.'),
    scopes_all: names('The token needs every one of these scopes.'),
    claims: optional(record(claimValue, { description: 'Claim (path) to required value, or list of accepted values. A list claim matches when it contains one.' })),
    methods: optional(record(array(string({ pattern: METHOD, patternName: 'upper-case HTTP method or *' }), { single: true, minItems: 1 }), { description: 'Role to the methods it may use (`*`: all). The identity needs a role that allows the request method.' })),
    mode: withDefault(oneOf(['enforce', 'report'] as const, { description: 'report: evaluate and log/count the would-be deny, but let the request through.' }), 'enforce'),
  },
  { description: 'Who may use this route. Needs an authenticated route.' },
);

export type AuthorizeConfig = Infer<typeof authorizeSchema>;

type Check = (roles: ReadonlySet<string>, scopes: ReadonlySet<string>, claims: Readonly<Record<string, unknown>>, method: string) => Reason | null;

function compileChecks(cfg: AuthorizeConfig): Check[] {
  const checks: Check[] = [];
  if (cfg.roles_any) {
    const want = cfg.roles_any;
    checks.push((roles) => (want.some((r) => roles.has(r)) ? null : 'role_missing'));
  }
  if (cfg.roles_all) {
    const want = cfg.roles_all;
    checks.push((roles) => (want.every((r) => roles.has(r)) ? null : 'role_missing'));
  }
  if (cfg.scopes_any) {
    const want = cfg.scopes_any;
    checks.push((_r, scopes) => (want.some((s) => scopes.has(s)) ? null : 'scope_missing'));
  }
  if (cfg.scopes_all) {
    const want = cfg.scopes_all;
    checks.push((_r, scopes) => (want.every((s) => scopes.has(s)) ? null : 'scope_missing'));
  }
  for (const [claim, expected] of Object.entries(cfg.claims ?? {})) {
    const read = claimAccessor(claim);
    const accepted = new Set(Array.isArray(expected) ? expected : [expected]);
    checks.push((_r, _s, claims) => {
      const v = read(claims);
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return accepted.has(String(v)) ? null : 'claim_mismatch';
      if (Array.isArray(v)) return v.some((x) => (typeof x === 'string' || typeof x === 'number') && accepted.has(String(x))) ? null : 'claim_mismatch';
      return 'claim_mismatch';
    });
  }
  if (cfg.methods) {
    const rules = Object.entries(cfg.methods).map(([role, methods]) => [role, methods.includes('*') ? null : new Set(methods)] as const);
    checks.push((roles, _s, _c, method) => {
      let listed = false;
      for (const [role, methods] of rules) {
        if (!roles.has(role)) continue;
        listed = true;
        if (methods === null || methods.has(method)) return null;
      }
      return listed ? 'method_not_allowed_for_role' : 'role_missing';
    });
  }
  return checks;
}

export const authorize = defineFilter<undefined, AuthorizeConfig, undefined>({
  name: 'authorize',
  reasons: AUTHORIZE_REASONS,
  stage: 'route',
  routeKey: 'authorize',
  routeSchema: authorizeSchema,
  compile({ config, routePath, routeName }, env) {
    if (!config) return null;
    const provider: AuthProvider | null | 'invalid' = providerOfRoute(env, routePath);
    if (provider === 'invalid') return null;
    if (provider === null) {
      env.problem([...routePath, 'authorize'], 'authorize needs an authenticated route: give the route `auth: { provider: NAME }` or set auth.default');
      return null;
    }
    const path = [...routePath, 'authorize'];
    if (!provider.carries.roles && (config.roles_any || config.roles_all || config.methods)) {
      env.problem(path, `provider "${provider.name}" gives no roles (set roles_header on the forward provider), so role rules could never pass`);
    }
    if (!provider.carries.scopes && (config.scopes_any || config.scopes_all)) {
      env.problem(path, `provider "${provider.name}" gives no scopes (set scopes_header on the forward provider), so scope rules could never pass`);
    }
    const checks = compileChecks(config);
    if (checks.length === 0) return null;
    const denies = new Map<Reason, Deny>(AUTHORIZE_REASONS.map((r) => [r, provider.forbidden(r)]));
    const grants = provider.grants;
    const report = config.mode === 'report';
    const reported = env.telemetry.metrics.counter('portcullis_authorize_reported_total', 'Requests authorize in report mode would have denied, by route and reason.', ['route', 'reason']);
    const log = env.telemetry.log;
    return {
      name: 'authorize',
      onRequest(ctx) {
        const claims = ctx.claims;
        // The auth filter runs first on this route; no claims means it let nothing through unauthenticated.
        const g = claims === null ? null : grants(claims);
        let reason: Reason | null = g === null ? 'role_missing' : null;
        for (let i = 0; reason === null && i < checks.length; i++) reason = checks[i]!(g!.roles, g!.scopes, claims!, ctx.method);
        if (reason === null) return undefined;
        if (report) {
          reported.inc({ route: routeName, reason });
          reportDeny(ctx, 'authorize', reason);
          log.info({ request_id: ctx.id, route: routeName, reason, subject: ctx.subject }, 'authorize (report mode) would deny');
          return undefined;
        }
        return denies.get(reason);
      },
      onResponse: null,
      describe: () => ({ provider: provider.name, ...config }),
    };
  },
});
