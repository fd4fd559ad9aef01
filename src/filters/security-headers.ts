// Security response headers: named policies (`headers: { strict: {...} }`, `headers: strict` on a route).
// A policy named `default` applies to every route that names none (`headers: none` opts a route out).
// Every field has a default that is safe for an API; `false` leaves a header out. HSTS is sent only when
// the client's connection is TLS (the listener's, or a trusted proxy's X-Forwarded-Proto: https).
import {
  array, boolean, dispatch, duration, object, oneOf, record, string, withDefault, type Infer, type Path, type Schema,
} from '../config/schema.ts';
import { namedPolicies, policyRef, resolveRef } from './policy-ref.ts';
import { defineFilter, type CompileEnv } from '../contract/filter.ts';

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
const CSP_DIRECTIVE = /^[a-z][a-z0-9-]*$/;
const CSP_SOURCE = /^[^\s;,]+$/;

/** A header value, or `false` to leave the header out. */
function valueOr<V extends string>(values: readonly V[] | null, description: string): Schema<V | string | false> {
  return dispatch<V | string | false>(values ? `${values.map((v) => JSON.stringify(v)).join(' | ')} | false` : 'string | false', { description }, (v) =>
    v === false ? (boolean() as Schema<false>) : values ? oneOf(values) : string({ pattern: HEADER_VALUE, patternName: 'header value' }),
  );
}

const hstsSchema = object({
  max_age: withDefault(duration({ description: 'max-age; browsers remember to use https only for this long.' }), 31_536_000_000),
  include_subdomains: withDefault(boolean({ description: 'includeSubDomains.' }), true),
  preload: withDefault(boolean({ description: 'preload (only once the domain is on the preload list).' }), false),
});

/** CSP as a mapping of directive to sources (`connect-src: ["'self'", https://api.example.com]`), or a string. */
const cspSchema = dispatch<Record<string, string[]> | string | false>(
  'mapping of directive to sources | string | false',
  { description: 'Content-Security-Policy: a mapping of directive to a list of sources, a raw policy string, or false.' },
  (v) =>
    v === false
      ? (boolean() as Schema<false>)
      : typeof v === 'string'
        ? string({ pattern: HEADER_VALUE, patternName: 'CSP header value' })
        : record(array(string({ pattern: CSP_SOURCE, patternName: 'CSP source (no spaces, ";" or ",")' }), { single: true }), { keyPattern: CSP_DIRECTIVE }),
);

const DEFAULT_CSP = { 'default-src': ["'none'"], 'frame-ancestors': ["'none'"] };

const headersPolicySchema = object(
  {
    hsts: withDefault(
      dispatch<Infer<typeof hstsSchema> | false>('mapping | false', { description: 'Strict-Transport-Security, sent only over TLS.' }, (v) =>
        v === false ? (boolean() as Schema<false>) : hstsSchema),
      { max_age: 31_536_000_000, include_subdomains: true, preload: false },
    ),
    content_type_options: withDefault(valueOr(['nosniff'] as const, 'X-Content-Type-Options.'), 'nosniff'),
    frame_options: withDefault(valueOr(['DENY', 'SAMEORIGIN'] as const, 'X-Frame-Options (legacy browsers; CSP frame-ancestors is the modern form).'), 'DENY'),
    referrer_policy: withDefault(valueOr(null, 'Referrer-Policy.'), 'no-referrer'),
    coop: withDefault(valueOr(['same-origin', 'same-origin-allow-popups', 'noopener-allow-popups', 'unsafe-none'] as const, 'Cross-Origin-Opener-Policy.'), 'same-origin'),
    coep: withDefault(valueOr(['require-corp', 'credentialless', 'unsafe-none'] as const, 'Cross-Origin-Embedder-Policy.'), 'require-corp'),
    corp: withDefault(valueOr(['same-origin', 'same-site', 'cross-origin'] as const, 'Cross-Origin-Resource-Policy.'), 'same-origin'),
    csp: withDefault(cspSchema, DEFAULT_CSP),
    csp_report_only: withDefault(cspSchema, false),
    permissions_policy: withDefault(valueOr(null, 'Permissions-Policy, e.g. "camera=(), microphone=(), geolocation=()".'), false),
    remove: withDefault(array(string({ pattern: HEADER_NAME, patternName: 'header name' }), { single: true, description: 'Upstream headers removed from every answer.' }), ['Server', 'X-Powered-By']),
    keep_upstream: withDefault(array(string({ pattern: HEADER_NAME, patternName: 'header name' }), { single: true, description: 'Headers (by HTTP name) for which a value the upstream sent wins over the policy\'s; all others are overridden.' }), []),
  },
  { description: 'A security-headers policy; every field has a default safe for an API.' },
);

export type HeadersPolicyConfig = Infer<typeof headersPolicySchema>;

type Tuple = readonly [name: string, value: string, keep: boolean];

export interface CompiledHeaders {
  readonly set: readonly Tuple[];
  readonly hsts: Tuple | null;
  readonly remove: readonly string[];
}

function cspValue(v: Record<string, string[]> | string): string {
  if (typeof v === 'string') return v;
  return Object.entries(v).map(([d, sources]) => (sources.length ? `${d} ${sources.join(' ')}` : d)).join('; ');
}

export function compileHeadersPolicy(config: HeadersPolicyConfig, path: Path, env: CompileEnv): CompiledHeaders {
  const keep = new Set(config.keep_upstream.map((h) => h.toLowerCase()));
  const set: Tuple[] = [];
  const add = (name: string, value: string | false) => {
    if (value !== false) set.push([name, value, keep.has(name)]);
  };
  add('x-content-type-options', config.content_type_options);
  add('x-frame-options', config.frame_options);
  add('referrer-policy', config.referrer_policy);
  add('cross-origin-opener-policy', config.coop);
  add('cross-origin-embedder-policy', config.coep);
  add('cross-origin-resource-policy', config.corp);
  add('content-security-policy', config.csp === false ? false : cspValue(config.csp));
  add('content-security-policy-report-only', config.csp_report_only === false ? false : cspValue(config.csp_report_only));
  add('permissions-policy', config.permissions_policy);
  let hsts: Tuple | null = null;
  if (config.hsts !== false) {
    const seconds = Math.floor(config.hsts.max_age / 1000);
    if (config.hsts.preload && (!config.hsts.include_subdomains || seconds < 31_536_000)) {
      env.problem([...path, 'hsts', 'preload'], 'HSTS preload needs include_subdomains and a max_age of at least 1y');
    }
    const value = `max-age=${seconds}${config.hsts.include_subdomains ? '; includeSubDomains' : ''}${config.hsts.preload ? '; preload' : ''}`;
    hsts = ['strict-transport-security', value, keep.has('strict-transport-security')];
  }
  const setNames = new Set(set.map((t) => t[0]));
  config.keep_upstream.forEach((name, i) => {
    const lower = name.toLowerCase();
    if (!setNames.has(lower) && !(lower === 'strict-transport-security' && hsts !== null)) {
      env.problem([...path, 'keep_upstream', i], `"${name}" is not a header this policy sets (${[...setNames, ...(hsts ? ['strict-transport-security'] : [])].join(', ')})`);
    }
  });
  const remove = config.remove.map((h) => h.toLowerCase()).filter((h) => !setNames.has(h));
  return { set, hsts, remove };
}

export const securityHeaders = defineFilter<Record<string, HeadersPolicyConfig>, string | HeadersPolicyConfig, Map<string, CompiledHeaders>>({
  name: 'security_headers',
  reasons: [],
  stage: 'route',
  globalKey: 'headers',
  globalSchema: namedPolicies(headersPolicySchema, 'Named security-header policies, referenced by routes as `headers: NAME`; one named `default` applies to routes that name none.'),
  routeKey: 'headers',
  routeSchema: policyRef(headersPolicySchema, 'Security-header policy of the route: a name, an inline policy, or none.'),
  setup(config, env) {
    const out = new Map<string, CompiledHeaders>();
    for (const [name, policy] of Object.entries(config ?? {})) out.set(name, compileHeadersPolicy(policy, ['headers', name], env));
    return out;
  },
  compile({ config, shared, routePath }, env) {
    const chosen = config === undefined && shared.has('default') ? 'default' : config;
    const policy = resolveRef(chosen, shared, (c, p) => compileHeadersPolicy(c, p, env), [...routePath, 'headers'], env, 'headers');
    if (policy === null) return null;
    const { set, hsts, remove } = policy;
    return {
      name: 'security_headers',
      onRequest: null,
      onResponse(ctx, head) {
        const h = head.headers;
        for (let i = 0; i < remove.length; i++) delete h[remove[i]!];
        for (let i = 0; i < set.length; i++) {
          const t = set[i]!;
          if (t[2] && h[t[0]] !== undefined) continue;
          h[t[0]] = t[1];
        }
        if (hsts !== null) {
          // Only over TLS: an HSTS header on plain HTTP is ignored by browsers and would mislead.
          if (ctx.scheme === 'https') {
            if (!(hsts[2] && h[hsts[0]] !== undefined)) h[hsts[0]] = hsts[1];
          } else delete h[hsts[0]];
        }
      },
      describe: () => ({
        headers: Object.fromEntries(set.map((t) => [t[0], t[2] ? `${t[1]} (upstream value kept)` : t[1]])),
        hsts: hsts ? `${hsts[1]} (TLS only)` : false,
        remove,
      }),
    };
  },
});
