// Policy schema (core keys + every filter module's keys) and the compiler: a validated policy in, an
// immutable CompiledPolicy out (route table, per-route filter chains, upstream pools). Nothing on the
// request path reads the policy itself.
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { createSecureContext } from 'node:tls';
import { filterModules } from '../filters/index.ts';
import type { CompileEnv, CompiledFilter, RequestHook, ResponseHook, StatusReport } from '../contract/filter.ts';
import type { Telemetry } from '../contract/telemetry.ts';
import { tracingSchema, type TracingPolicy } from '../observability/tracing-config.ts';
import { CidrSet } from '../config/cidr.ts';
import {
  compileRouteHardening, compileScrubber, hardeningSchema, routeHardeningSchema,
  type HardeningConfig, type RouteHardening, type RouteHardeningConfig,
} from '../proxy/hardening.ts';
import type { DirectAnswer } from '../proxy/answer.ts';
import { Upstream, upstreamSchema, type UpstreamOptions } from '../proxy/upstream.ts';
import { globProblem, Router } from '../proxy/router.ts';
import { PolicyError, type PolicyProblem } from '../config/errors.ts';
import { loadPolicySource, parsePolicySource, type LoadedSource } from '../config/load.ts';
import {
  array, boolean, cidr, dispatch, duration, integer, nearest, object, oneOf, optional, record, size, string, withDefault,
  type Infer, type Issue, type Path, type Schema,
} from '../config/schema.ts';

const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):\d{1,5}$/;
const NAME = /^[A-Za-z0-9_.-]+$/;
const METHOD = /^[A-Z]+$/;

export const listenerSchema = object({
  name: optional(string({ pattern: NAME, patternName: 'name', description: 'Name used in logs.' })),
  address: string({ pattern: ADDRESS, patternName: 'address (host:port)', description: 'Address to listen on, e.g. 0.0.0.0:8443 or [::]:8443.' }),
  tls: optional(object({
    cert: string({ description: 'PEM certificate chain file; re-read when it changes.' }),
    key: string({ description: 'PEM private key file; re-read when it changes.' }),
    profile: withDefault(oneOf(['intermediate', 'modern'] as const, {
      description: "Mozilla's server profile: intermediate (TLS 1.2 with ECDHE and AES-GCM/ChaCha20 only, and TLS 1.3) or modern (TLS 1.3 only).",
    }), 'intermediate'),
    min_version: optional(oneOf(['TLSv1.2', 'TLSv1.3'] as const, { description: "Override the profile's lowest TLS version." })),
    ciphers: optional(string({
      description: "Override the profile's cipher list (OpenSSL syntax; TLS 1.3 suites by their TLS_ names). Checked at load; weaker lists are the policy's own risk.",
    })),
    client_ca: optional(string({ description: 'PEM file of the CAs client certificates must chain to (mutual TLS); re-read when it changes. Without it no client certificate is asked for.' })),
    client_auth: withDefault(oneOf(['require', 'optional'] as const, {
      description: 'With client_ca: require refuses a connection without a valid certificate at the handshake (no HTTP answer is possible then); optional asks for one, and routes whose auth provider is client_cert refuse requests without a valid one with a precise reason (docs/listeners.md).',
    }), 'require'),
    crl: optional(string({ description: 'PEM certificate revocation list(s) checked at the handshake, one current CRL for each CA of the chain; re-read when it changes (open connections are then closed, so clients reconnect and are checked again).' })),
    forward_client_cert: withDefault(oneOf(['sanitize_set', 'sanitize'] as const, {
      description: 'X-Forwarded-Client-Cert to the upstream: sanitize_set removes client-sent copies and sets it (Envoy\'s format: Hash, Subject, URI, DNS) for a verified certificate; sanitize only removes. Client-sent copies are always removed.',
    }), 'sanitize_set'),
  }, {
    description: 'Terminate TLS here; ALPN offers h2 and http/1.1.',
    check(v, path, issues) {
      if (v.client_ca === undefined && v.crl !== undefined) issues.push({ path: [...path, 'crl'], message: '"crl" needs "client_ca" (revocation is checked for client certificates)' });
    },
  })),
  http2: withDefault(boolean({ description: 'Offer HTTP/2 by ALPN on a TLS listener.' }), true),
  redirect_to_https: withDefault(boolean({ description: 'Answer every request with a redirect to https (no routing, no forwarding).' }), false),
  https_port: withDefault(integer({ min: 1, max: 65535, description: 'Port used in redirect targets.' }), 443),
});

const limitsSchema = object({
  max_header_size: withDefault(size({ description: 'Largest request head (request line + headers); larger gets 431.' }), 16 * 1024),
  max_headers: withDefault(integer({ min: 8, max: 1000, description: 'Most header lines a request may carry; more gets 431.' }), 100),
  header_timeout: withDefault(duration({ min: 100, description: 'Time a client has to send the whole request head.' }), 10_000),
  request_timeout: withDefault(duration({ min: 100, description: 'Time a client has to send the whole request (head + body).' }), 300_000),
  keep_alive_timeout: withDefault(duration({ description: 'Idle time before a client keep-alive connection is closed.' }), 5_000),
  max_connections: withDefault(integer({ min: 1, description: 'Client connections per listener per process.' }), 10_000),
  max_body_size: withDefault(size({ description: 'Default request body limit for every route (413 above it).' }), 10 * 1024 * 1024),
  shutdown_grace: withDefault(duration({ description: 'On SIGTERM, time in-flight requests get to finish.' }), 30_000),
  http2_reset_burst: withDefault(integer({ min: 1, description: 'HTTP/2: stream resets (RST_STREAM) a client connection may send at once; beyond its budget the connection gets GOAWAY ENHANCE_YOUR_CALM and closes (rapid-reset floods).' }), 200),
  http2_resets_per_second: withDefault(integer({ min: 1, description: 'HTTP/2: rate at which the reset budget refills, per connection.' }), 50),
  send_timeout: withDefault(duration({ min: 100, description: 'Longest a response may wait for the client to read more of it (a stalled or zero-window client, as nginx send_timeout); then the response is aborted and its upstream connection freed.' }), 60_000),
  release_memory: withDefault(oneOf(['startup', 'when_idle', 'off'] as const, {
    description: 'Compacting GCs that give V8\'s free heap pages back to the OS (docs/operations.md "Memory"): startup runs one in the first quiet second after start, before any request (the policy compile\'s garbage); when_idle also runs one whenever no request has started for 1 s after the heap grew by 4 MiB (memory back after each load, but the JIT\'s work is lost: the first second of the next load is slower); off never.',
  }), 'startup'),
});

const logSchema = object({
  level: withDefault(oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, { description: 'Error-log level; LOG_LEVEL overrides it.' }), 'info'),
  access: withDefault(string({ description: 'Access log: stdout, stderr, off, or a file path.' }), 'stdout'),
  audit: withDefault(string({ description: 'Audit log: stdout, stderr, off, or a file path.' }), 'stderr'),
  error: withDefault(string({ description: 'Error log: stdout, stderr, off, or a file path.' }), 'stderr'),
});

const matchSchema = object(
  {
    host: optional(array(string({ pattern: /^(\*\.)?[A-Za-z0-9.-]+$/, patternName: 'host name' }), { single: true, description: 'Host names (or *.domain wildcards); any host when absent.' })),
    path: optional(string({ pattern: /^\//, patternName: 'absolute path', description: 'Exact path.' })),
    path_prefix: optional(string({ pattern: /^\//, patternName: 'absolute path', description: 'Path prefix, segment-aware: /api matches /api and /api/x, never /apiary.' })),
    path_glob: optional(string({
      pattern: /^\//, patternName: 'absolute path',
      description: 'Glob on the normalized path: * matches within one segment (a lone * one non-empty segment), ** any number of segments, e.g. /files/**/*.png. At most one * per segment and one ** per glob. Beats a prefix with as many or fewer literal leading segments (docs/routing.md "Glob routes").',
    })),
    methods: optional(array(string({ pattern: METHOD, patternName: 'upper-case HTTP method' }), { single: true, description: 'Methods; all when absent.' })),
    case_sensitive: withDefault(boolean({ description: 'Match the path with its letter case; false for upstreams that treat /API as /api (so a limit on /api/login also holds /API/LOGIN).' }), true),
  },
  {
    description: 'What requests the route takes. More specific wins: host, then exact path, then glob or prefix by literal leading segments (a glob wins a tie), then methods.',
    check(m, path, issues) {
      const kinds = [m.path, m.path_prefix, m.path_glob].filter((k) => k !== undefined).length;
      if (kinds > 1) issues.push({ path, message: 'give one of "path", "path_prefix" or "path_glob"' });
      if (m.path_glob !== undefined) {
        const problem = globProblem(m.path_glob);
        if (problem !== null) issues.push({ path: [...path, 'path_glob'], message: problem });
      }
    },
  },
);

const REASON_TOKEN = /^[a-z][a-z0-9_]{0,63}$/;
const CONTENT_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[^"\r\n]*"|[A-Za-z0-9!#$&^_.+-]+))*$/;

/** `respond:` — the route answers itself instead of forwarding (Envoy direct_response, NGINX return). */
const respondSchema = object(
  {
    status: integer({ min: 200, max: 599, description: 'Status of the answer, 200-599 (3xx: use `redirect`).' }),
    reason: optional(string({
      pattern: REASON_TOKEN, patternName: 'reason code (snake_case)',
      description: 'Reason code of the answer: the problem+json `reason`, the deny reason in metrics, access and audit logs. Required for 4xx/5xx, absent for 2xx (not a refusal).',
    })),
    detail: optional(string({ description: 'A short human explanation in the problem+json body.' })),
    body: optional(string({ description: 'Literal body instead of problem+json (a health text, a maintenance page); with content_type.' })),
    content_type: optional(string({ pattern: CONTENT_TYPE, patternName: 'media type', description: 'Content-Type of `body`; default text/plain; charset=utf-8.' })),
  },
  {
    description: 'Answer here instead of forwarding: after the route\'s filters (auth, rate limits... still apply), the gateway writes this answer itself. A route has either `upstream` or `respond`.',
    check(v, path, issues) {
      if (v.status >= 300 && v.status < 400) issues.push({ path: [...path, 'status'], message: 'a 3xx answer needs a Location: use `redirect:` instead' });
      if (v.status >= 400 && v.reason === undefined) issues.push({ path, message: 'a 4xx/5xx answer needs a "reason" (a snake_case code, e.g. internal_only)' });
      if (v.content_type !== undefined && v.body === undefined) issues.push({ path: [...path, 'content_type'], message: 'content_type needs a "body"' });
      if (v.body !== undefined && v.detail !== undefined) issues.push({ path: [...path, 'detail'], message: 'detail belongs in the problem+json body; with "body" the answer is the body as written' });
      if (v.status === 204 && v.body !== undefined) issues.push({ path: [...path, 'body'], message: 'a 204 answer has no body' });
      if (v.status < 300 && v.status !== 204 && v.body === undefined) issues.push({ path, message: 'a 2xx answer needs a "body" (or status 204)' });
      if (v.status < 300 && (v.reason !== undefined || v.detail !== undefined)) issues.push({ path: [...path, v.reason !== undefined ? 'reason' : 'detail'], message: 'a 2xx answer is not a refusal: it has no reason or detail' });
    },
  },
);

function compileRespond(c: Infer<typeof respondSchema>): DirectAnswer {
  return Object.freeze({
    status: c.status,
    reason: c.reason ?? null,
    detail: c.detail,
    body: c.body !== undefined ? Buffer.from(c.body, 'utf8') : null,
    contentType: c.content_type ?? 'text/plain; charset=utf-8',
  });
}

function routeSchema(): Schema<Record<string, unknown> & CoreRoute> {
  const fields: Record<string, Schema<unknown>> = {
    name: optional(string({ pattern: NAME, patternName: 'route name', description: 'Route name used in metrics and logs; derived from the match when absent.' })),
    match: matchSchema,
    upstream: optional(string({ description: 'Name of the upstream to forward to.' })),
    respond: optional(respondSchema),
    timeout: optional(duration({ description: 'Upstream timeout for this route (overrides the upstream\'s).' })),
    max_body_size: optional(size({ description: 'Request body limit for this route.' })),
    websocket: withDefault(boolean({ description: 'Let WebSocket upgrades through (after the route\'s filters).' }), true),
    hardening: optional(routeHardeningSchema),
  };
  for (const m of filterModules) if (m.routeKey && m.routeSchema) fields[m.routeKey] = optional(m.routeSchema);
  return object(fields) as unknown as Schema<Record<string, unknown> & CoreRoute>;
}

const HOST_NAME = /^(\*\.)?[A-Za-z0-9.-]+$/;

/** `hosts: [{ names, defaults, routes }]`: a virtual host. Its routes are compiled like flat ones, bound to its names. */
function hostGroupSchema(): Schema<HostGroup> {
  const defaults: Record<string, Schema<unknown>> = {
    timeout: optional(duration({ description: 'Upstream timeout of every route of the group that sets none.' })),
    max_body_size: optional(size({ description: 'Request body limit of every route of the group that sets none.' })),
  };
  for (const m of filterModules) if (m.routeKey && m.routeSchema) defaults[m.routeKey] = optional(m.routeSchema);
  return object({
    names: array(string({ pattern: HOST_NAME, patternName: 'host name' }), { single: true, minItems: 1, description: 'Host names (exact, or *.domain for subdomains) this group serves.' }),
    defaults: optional(object(defaults, { description: 'Route keys (auth, cors, headers, cookies, rate_limit...) every route of the group takes unless it sets its own.' })),
    routes: array(routeSchema(), { minItems: 1, description: "The group's routes; their `match` may not name hosts (the group does)." }),
  }) as unknown as Schema<HostGroup>;
}

interface HostGroup {
  names: string[];
  defaults: Record<string, unknown> | undefined;
  routes: (Record<string, unknown> & CoreRoute)[];
}

interface CoreRoute {
  name: string | undefined;
  match: Infer<typeof matchSchema>;
  upstream: string | undefined;
  respond: Infer<typeof respondSchema> | undefined;
  timeout: number | undefined;
  max_body_size: number | undefined;
  websocket: boolean;
  hardening: RouteHardeningConfig | undefined;
}

function policySchema(): Schema<Record<string, unknown> & CorePolicy> {
  const fields: Record<string, Schema<unknown>> = {
    version: integer({ min: 1, max: 1, description: 'Policy format version; 1.' }),
    mode: withDefault(oneOf(['development', 'production'] as const, { description: 'production refuses insecure settings at start.' }), 'development'),
    listeners: array(listenerSchema, { minItems: 1, description: 'Where the gateway accepts traffic.' }),
    admin: withDefault(
      object({
        address: withDefault(string({ pattern: ADDRESS, patternName: 'address (host:port)', description: 'Admin address; loopback unless something outside the gateway keeps it private.' }), '127.0.0.1:9901'),
        protected_by: optional(oneOf(['network_policy', 'firewall'] as const, {
          description: 'What keeps a non-loopback admin address private (the admin port has no authentication): a Kubernetes NetworkPolicy (the Helm chart renders one) or a host firewall. Production mode refuses a non-loopback admin address without it.',
        })),
        dashboard: withDefault(boolean({ description: 'Serve the read-only dashboard at /dashboard/ (routes with live rates, upstream health, rate-limit store, identity, reloads, certificates, an explain form); see docs/dashboard.md.' }), true),
      }, { description: 'Admin listener: /healthz /readyz /reload /metrics /dashboard/.' }),
      { address: '127.0.0.1:9901', protected_by: undefined, dashboard: true },
    ),
    workers: withDefault(
      dispatch<number | 'auto'>('integer | "auto"', { description: 'Processes sharing the listeners; auto = one per core.' }, (v) =>
        typeof v === 'number' ? integer({ min: 1, max: 256 }) : oneOf(['auto'] as const)),
      1,
    ),
    trusted_proxies: withDefault(array(cidr(), { description: 'Peers whose X-Forwarded-* and Forwarded headers are believed.' }), []),
    limits: withDefault(limitsSchema, limitsSchema.parse({}, [], [])!),
    hardening: hardeningSchema,
    log: withDefault(logSchema, logSchema.parse({}, [], [])!),
    tracing: optional(tracingSchema),
    upstreams: withDefault(record(upstreamSchema, { keyPattern: NAME, description: 'Named upstream services.' }), {}),
    routes: withDefault(array(routeSchema(), { description: 'Routes, matched most specific first, on any host unless their match names hosts.' }), []),
    hosts: withDefault(array(hostGroupSchema(), { description: 'Virtual hosts: groups of host names, each with its own routes and route defaults (docs/routing.md "Virtual hosts"). Flat `routes` keep working beside them.' }), []),
    unknown_host: optional(object({
      status: withDefault(integer({ min: 400, max: 599, description: 'Status for a Host no route serves, e.g. 421 Misdirected Request or 404.' }), 404),
      reason: withDefault(string({ pattern: REASON_TOKEN, patternName: 'reason code (snake_case)', description: 'Reason code of the answer.' }), 'host_not_found'),
    }, { description: 'Answer for a request whose Host no route serves (no host group names it and no route takes any host); without it such a request gets 404 route_not_found.' })),
  };
  for (const m of filterModules) if (m.globalKey && m.globalSchema) fields[m.globalKey] = m.globalSchema.optional ? m.globalSchema : optional(m.globalSchema);
  return object(fields) as unknown as Schema<Record<string, unknown> & CorePolicy>;
}


export interface CorePolicy {
  version: number;
  mode: 'development' | 'production';
  listeners: Infer<typeof listenerSchema>[];
  admin: { address: string; protected_by?: 'network_policy' | 'firewall' | undefined; dashboard: boolean };
  workers: number | 'auto';
  trusted_proxies: ReturnType<typeof cidr> extends Schema<infer C> ? C[] : never;
  limits: Infer<typeof limitsSchema>;
  hardening: HardeningConfig;
  log: Infer<typeof logSchema>;
  tracing: TracingPolicy | undefined;
  upstreams: Record<string, Infer<typeof upstreamSchema>>;
  routes: (Record<string, unknown> & CoreRoute)[];
  hosts: HostGroup[];
  unknown_host: { status: number; reason: string } | undefined;
}

export type Listener = Infer<typeof listenerSchema>;
export type Limits = Infer<typeof limitsSchema>;

export interface CompiledRoute {
  readonly name: string;
  readonly index: number;
  readonly upstream: Upstream | null;
  /** The route's own answer (`respond:`), written after its filters instead of forwarding; else null. */
  readonly respond: DirectAnswer | null;
  readonly timeoutMs: number | null;
  readonly maxBodySize: number;
  /** `limits.send_timeout`: how long a response may wait for a client that does not read. */
  readonly sendTimeoutMs: number;
  readonly websocket: boolean;
  /** Methods the route lists (upper case), null when it takes any. */
  readonly methods: ReadonlySet<string> | null;
  /** A filter of the route answers CORS preflights: preflights are routed here by the method they ask for. */
  readonly preflight: boolean;
  /** A filter of the route reads the body's first bytes: requests with a body get `ctx.body` before the chain. */
  readonly readsBody: boolean;
  /** Request-path hardening rules (global defaults with the route's exceptions). */
  readonly hardening: RouteHardening;
  /** Request hooks in chain order, null when none (checked once per request). */
  readonly request: readonly RequestHook[] | null;
  readonly requestNames: readonly string[];
  readonly response: readonly ResponseHook[] | null;
  readonly filters: readonly CompiledFilter[];
  readonly matchDescription: string;
  /** The route's keys as compiled (a host group's defaults filled in): what `portcullis test` reads. */
  readonly config: Readonly<Record<string, unknown>>;
}

export interface CompiledPolicy {
  readonly file: string;
  readonly hash: string;
  readonly mode: 'development' | 'production';
  readonly policy: Readonly<CorePolicy>;
  readonly written: unknown;
  readonly source: LoadedSource;
  readonly listeners: readonly Listener[];
  readonly admin: { readonly address: string; readonly protected_by?: 'network_policy' | 'firewall' | undefined; readonly dashboard: boolean };
  readonly workers: number;
  readonly limits: Limits;
  readonly trustedProxies: CidrSet;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly router: Router<CompiledRoute>;
  /**
   * Every route under its lower-case, trailing-slash-free path (case-insensitive): the route a request's
   * canonical spelling takes (docs/security.md "path spelling").
   */
  readonly canonicalRouter: Router<CompiledRoute>;
  /** Some route path has upper case or a trailing slash, so even a canonical request spelling must be checked. */
  readonly spellingSensitive: boolean;
  /** Client header names removed before any filter (hardening): name, peer trusted → remove. */
  readonly scrub: (name: string, trustedPeer: boolean) => boolean;
  readonly routes: readonly CompiledRoute[];
  /** `unknown_host`: the answer for a Host no route serves, or null (404 route_not_found). */
  readonly unknownHost: { readonly status: number; readonly reason: string } | null;
  readonly globalRequest: readonly RequestHook[] | null;
  readonly globalNames: readonly string[];
  readonly globalFilters: readonly CompiledFilter[];
  /** Resolves when every resource the policy needs is ready (first JWKS fetch...). */
  readonly ready: Promise<void>;
  /** Checks `/readyz` runs, by name (true, or the reason it is not ready). */
  readonly readiness: ReadonlyMap<string, () => true | string>;
  /** Live status reports the modules registered (admin dashboard), by name. */
  readonly status: ReadonlyMap<string, () => StatusReport>;
  close(): Promise<void>;
}

let cachedSchema: Schema<Record<string, unknown> & CorePolicy> | null = null;
export function getPolicySchema(): Schema<Record<string, unknown> & CorePolicy> {
  cachedSchema ??= policySchema();
  return cachedSchema;
}

export function routeDisplayName(route: CoreRoute): string {
  const m = route.match;
  const host = m.host?.length ? `${m.host.join(',')}` : '';
  const path = m.path ?? m.path_glob ?? (m.path_prefix ? `${m.path_prefix.replace(/\/$/, '')}/*` : '/*');
  const methods = m.methods?.length ? `${m.methods.join(',')} ` : '';
  return `${methods}${host}${path}`;
}

export interface CompileOptions {
  telemetry: Telemetry;
  /** Refuse the production checklist's problems even in development mode (`validate --production`). */
  production?: boolean;
  /** The policy this one replaces (reload): unchanged targets keep their health (Upstream.adoptHealth). */
  previous?: CompiledPolicy | null;
  /** How upstreams' active checks run (UpstreamOptions.activeChecks); default local. */
  activeChecks?: UpstreamOptions['activeChecks'];
}

export function loadAndCompile(file: string, options: CompileOptions, env: NodeJS.ProcessEnv = process.env): CompiledPolicy {
  return compilePolicy(loadPolicySource(file, env), options);
}

export function compileText(text: string, file: string, options: CompileOptions, env: NodeJS.ProcessEnv = process.env): CompiledPolicy {
  return compilePolicy(parsePolicySource(text, file, env), options);
}

export function compilePolicy(source: LoadedSource, options: CompileOptions): CompiledPolicy {
  const issues: Issue[] = [];
  const policy = getPolicySchema().parse(source.value, [], issues);
  const fail = () => {
    const problems: PolicyProblem[] = issues.map((i) => source.problem(i));
    problems.sort((a, b) => a.line - b.line || a.column - b.column);
    return new PolicyError(problems.map((p) => ({ ...p, message: source.secrets.mask(p.message) })));
  };
  if (!policy || issues.length) {
    referenceProblems(source.value, issues);
    throw fail();
  }

  const closers: (() => void | Promise<void>)[] = [];
  const readies: Promise<void>[] = [];
  const readiness = new Map<string, () => true | string>();
  const status = new Map<string, () => StatusReport>();
  const production = policy.mode === 'production' || options.production === true;
  const env: CompileEnv = {
    mode: production ? 'production' : 'development',
    secrets: source.secrets,
    telemetry: options.telemetry,
    problem: (path, message, atKey) => issues.push({ path, message, atKey }),
    onClose: (c) => closers.push(c),
    onReady: (p) => readies.push(p),
    readiness: (name, check) => readiness.set(name, check),
    status: (name, report) => status.set(name, report),
  };
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        options.telemetry.log.warn({ err: String(err) }, 'closing a policy resource failed');
      }
    }
  };

  try {
    if (production) productionChecks(policy, env);
    listenerTlsChecks(policy, env);

    const upstreams = buildUpstreams(policy.upstreams, env, options.previous?.upstreams, { activeChecks: options.activeChecks ?? 'local' });
    for (const u of upstreams.values()) closers.push(() => u.close());

    const shared = new Map<string, unknown>();
    for (const m of filterModules) {
      const cfg = m.globalKey ? policy[m.globalKey] : undefined;
      shared.set(m.name, m.setup ? m.setup(cfg, env) : undefined);
    }

    const globalFilters: CompiledFilter[] = [];
    for (const m of filterModules) {
      if (m.stage !== 'global') continue;
      const f = m.compile({ config: undefined, shared: shared.get(m.name), routeName: '', routePath: [], methods: [] }, env);
      if (f) globalFilters.push(f);
    }

    const router = new Router<CompiledRoute>();
    const canonicalRouter = new Router<CompiledRoute>();
    let spellingSensitive = false;
    const routes: CompiledRoute[] = [];
    const names = new Map<string, number>();
    // Flat routes, then every host group's routes bound to its names with its defaults filled in: one list,
    // one router. `where` names a route as the policy file does (routes[3], hosts[0].routes[1]).
    const effective: { route: Record<string, unknown> & CoreRoute; path: Path }[] = policy.routes.map((route, i) => ({ route, path: ['routes', i] }));
    policy.hosts.forEach((group, g) => {
      group.routes.forEach((route, r) => {
        const path: Path = ['hosts', g, 'routes', r];
        if (route.match.host !== undefined) env.problem([...path, 'match', 'host'], 'a route of a host group takes the group\'s names; move it to a group for its hosts (or to the flat routes)');
        const merged: Record<string, unknown> & CoreRoute = { ...route, match: { ...route.match, host: group.names } };
        for (const [key, value] of Object.entries(group.defaults ?? {})) if (value !== undefined && merged[key] === undefined) merged[key] = value;
        effective.push({ route: merged, path });
      });
    });
    const where = (i: number) => effective[i]!.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').slice(1);
    effective.forEach(({ route, path: routePath }, index) => {
      const name = route.name ?? routeDisplayName(route);
      const prior = names.get(name);
      if (prior !== undefined) {
        env.problem(route.name ? [...routePath, 'name'] : [...routePath, 'match'], `duplicate route name "${name}" (also ${where(prior)})`);
      }
      names.set(name, index);
      let upstream: Upstream | null = null;
      if (route.upstream !== undefined) {
        upstream = upstreams.get(route.upstream) ?? null;
        if (!upstream) env.problem([...routePath, 'upstream'], `unknown upstream "${route.upstream}"${hint(route.upstream, upstreams.keys())}`);
      }
      const methods = route.match.methods ?? [];
      const filters: CompiledFilter[] = [];
      for (const m of filterModules) {
        if (m.stage !== 'route') continue;
        const config = m.routeKey ? route[m.routeKey] : undefined;
        const f = m.compile({ config, shared: shared.get(m.name), routeName: name, routePath, methods }, env);
        if (f) filters.push(f);
      }
      if (route.upstream !== undefined && route.respond !== undefined) {
        env.problem([...routePath, 'respond'], 'a route either forwards ("upstream") or answers itself ("respond"), not both');
      }
      if (route.upstream === undefined && route.respond === undefined && !filters.some((f) => f.onRequest !== null)) {
        env.problem(routePath, 'route has no "upstream", no "respond" and no filter that answers it');
      }
      const requestFilters = filters.filter((f) => f.onRequest !== null);
      const responseHooks = filters.map((f) => f.onResponse).filter((h): h is ResponseHook => h !== null);
      const compiled: CompiledRoute = Object.freeze({
        name,
        index,
        upstream,
        respond: route.respond !== undefined ? compileRespond(route.respond) : null,
        timeoutMs: route.timeout ?? null,
        maxBodySize: route.max_body_size ?? policy.limits.max_body_size,
        sendTimeoutMs: policy.limits.send_timeout,
        websocket: route.websocket,
        methods: methods.length ? new Set(methods) : null,
        preflight: filters.some((f) => f.answersPreflight === true),
        readsBody: filters.some((f) => f.readsBody === true),
        hardening: compileRouteHardening(policy.hardening, route.hardening),
        request: requestFilters.length ? requestFilters.map((f) => f.onRequest!) : null,
        requestNames: requestFilters.map((f) => f.name),
        response: responseHooks.length ? responseHooks : null,
        filters,
        matchDescription: routeDisplayName(route),
        config: route,
      });
      routes.push(compiled);
      const conflict = router.add(
        {
          hosts: route.match.host ?? [], path: route.match.path ?? null, pathGlob: route.match.path_glob ?? null,
          pathPrefix: route.match.path_prefix ?? (route.match.path || route.match.path_glob ? null : '/'), methods, caseInsensitive: !route.match.case_sensitive,
        },
        compiled,
        index,
      );
      if (conflict) env.problem([...routePath, 'match'], `duplicate route: ${where(conflict.otherIndex)} already matches the same host, path and methods`);
      else {
        // The canonical table: one spelling per route, so a request spelled differently can be checked
        // against the route its canonical spelling takes. Two routes that differ only in case or a
        // trailing slash cannot both protect their spellings.
        const exact = route.match.path;
        if (exact !== undefined && (exact !== exact.toLowerCase() || (exact.length > 1 && exact.endsWith('/')))) spellingSensitive = true;
        const prefix = route.match.path_prefix;
        if (prefix !== undefined && prefix !== prefix.toLowerCase()) spellingSensitive = true;
        const glob = route.match.path_glob;
        if (glob !== undefined && (glob !== glob.toLowerCase() || glob.endsWith('/'))) spellingSensitive = true;
        const trim = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p);
        const canonicalExact = exact === undefined ? null : trim(exact);
        const clash = canonicalRouter.add(
          {
            hosts: route.match.host ?? [], path: canonicalExact, pathGlob: glob === undefined ? null : trim(glob),
            pathPrefix: prefix ?? (exact || glob ? null : '/'), methods, caseInsensitive: true,
          },
          compiled,
          index,
        );
        if (clash && (compiled.hardening.protectSpelling || routes[clash.otherIndex]!.hardening.protectSpelling)) {
          env.problem(
            [...routePath, 'match'],
            `${where(clash.otherIndex)} matches the same path but for letter case or a trailing slash: an upstream that ignores them could not tell the two apart. Merge them, or set \`hardening: { path_spelling: allow }\` on both if the upstream is case- and slash-sensitive`,
          );
        }
      }
    });

    if (issues.length) throw fail();

    const workers = policy.workers === 'auto' ? availableParallelism() : policy.workers;
    const globalRequest = globalFilters.filter((f) => f.onRequest !== null);
    const compiled: CompiledPolicy = {
      file: source.file,
      hash: createHash('sha256').update(JSON.stringify(source.written)).digest('hex').slice(0, 16),
      mode: policy.mode,
      policy,
      written: source.written,
      source,
      listeners: policy.listeners,
      admin: policy.admin,
      workers,
      limits: policy.limits,
      trustedProxies: new CidrSet(policy.trusted_proxies),
      upstreams,
      router,
      canonicalRouter,
      spellingSensitive,
      scrub: compileScrubber(policy.hardening),
      routes,
      unknownHost: policy.unknown_host ?? null,
      globalRequest: globalRequest.length ? globalRequest.map((f) => f.onRequest!) : null,
      globalNames: globalRequest.map((f) => f.name),
      globalFilters,
      ready: Promise.all(readies).then(() => undefined),
      readiness,
      status,
      close: closeAll,
    };
    return compiled;
  } catch (err) {
    void closeAll();
    throw err;
  }
}

function buildUpstreams(configs: CorePolicy['upstreams'], env: CompileEnv, previous: ReadonlyMap<string, Upstream> | undefined, options: UpstreamOptions): Map<string, Upstream> {
  const upstreams = new Map<string, Upstream>();
  for (const [name, cfg] of Object.entries(configs)) {
    const u = new Upstream(name, cfg, env, ['upstreams', name], options);
    const before = previous?.get(name);
    if (before !== undefined) u.adoptHealth(before);
    upstreams.set(name, u);
  }
  return upstreams;
}

/** The upstreams of a policy file and nothing else: what the cluster primary runs active checks with. */
export interface CompiledUpstreams {
  readonly upstreams: ReadonlyMap<string, Upstream>;
  close(): Promise<void>;
}

/**
 * Validates `file` and builds only its upstreams (no filters, no key sets, no stores), checking actively
 * and telling `onCheckChanged` each verdict; `previous` hands the health of unchanged targets over.
 */
export function loadUpstreams(file: string, telemetry: Telemetry, onCheckChanged: NonNullable<UpstreamOptions['onCheckChanged']>, previous?: CompiledUpstreams | null, env: NodeJS.ProcessEnv = process.env): CompiledUpstreams {
  const source = loadPolicySource(file, env);
  const issues: Issue[] = [];
  const policy = getPolicySchema().parse(source.value, [], issues);
  const fail = () => new PolicyError(issues.map((i) => source.problem(i)).map((p) => ({ ...p, message: source.secrets.mask(p.message) })));
  if (!policy || issues.length) throw fail();
  const compileEnv: CompileEnv = {
    mode: policy.mode === 'production' ? 'production' : 'development',
    secrets: source.secrets,
    telemetry,
    problem: (path, message, atKey) => issues.push({ path, message, atKey }),
    onClose: () => undefined,
    onReady: () => undefined,
    readiness: () => undefined,
  };
  const upstreams = buildUpstreams(policy.upstreams, compileEnv, previous?.upstreams, { activeChecks: 'local', onCheckChanged });
  const close = async () => {
    await Promise.all([...upstreams.values()].map((u) => u.close()));
  };
  if (issues.length) {
    void close();
    throw fail();
  }
  return { upstreams, close };
}

function hint(word: string, names: Iterable<string>): string {
  const list = [...names];
  const near = list.find((n) => n.toLowerCase() === word.toLowerCase()) ?? nearest(word, list);
  return near ? ` (did you mean "${near}"?)` : list.length ? ` (known: ${list.join(', ')})` : ' (no upstreams are defined)';
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):/;

/**
 * The production checklist of the core; filter modules add theirs in their own compile steps. Every
 * problem is reported (none stops the others), so `validate --production` prints the whole checklist.
 */
function productionChecks(policy: CorePolicy, env: CompileEnv): void {
  if (policy.mode !== 'production') {
    env.problem(['mode'], 'production: the policy says `mode: development`; set `mode: production` so the gateway itself refuses insecure settings at start');
  }
  policy.listeners.forEach((l, i) => {
    if (!l.tls && !l.redirect_to_https && policy.trusted_proxies.length === 0) {
      env.problem(['listeners', i], 'production: a plain-HTTP listener must be redirect_to_https, or sit behind a TLS-terminating proxy listed in trusted_proxies');
    }
  });
  if (!LOOPBACK.test(policy.admin.address) && policy.admin.protected_by === undefined) {
    env.problem(
      ['admin', 'address'],
      'production: the admin listener (no authentication) is on a non-loopback address; bind it to 127.0.0.1, or set admin.protected_by to what keeps it private (network_policy, firewall)',
    );
  }
}

/** A cipher list OpenSSL cannot use stops the load here, not the first TLS handshake. */
function listenerTlsChecks(policy: CorePolicy, env: CompileEnv): void {
  policy.listeners.forEach((l, i) => {
    if (!l.tls?.ciphers) return;
    try {
      createSecureContext({ ciphers: l.tls.ciphers, minVersion: l.tls.min_version ?? 'TLSv1.2' });
    } catch (err) {
      env.problem(['listeners', i, 'tls', 'ciphers'], `OpenSSL accepts no cipher of this list (${(err as Error).message})`);
    }
  });
}

/**
 * When the schema already failed, still name routes that reference unknown upstreams, so one run of
 * `validate` lists every problem a user has to fix.
 */
function referenceProblems(value: unknown, issues: Issue[]): void {
  if (!value || typeof value !== 'object') return;
  const v = value as { upstreams?: unknown; routes?: unknown };
  const names = v.upstreams && typeof v.upstreams === 'object' ? Object.keys(v.upstreams) : [];
  if (!Array.isArray(v.routes)) return;
  v.routes.forEach((route: unknown, i) => {
    const up = route && typeof route === 'object' ? (route as { upstream?: unknown }).upstream : undefined;
    if (typeof up === 'string' && !names.includes(up)) {
      issues.push({ path: ['routes', i, 'upstream'], message: `unknown upstream "${up}"${hint(up, names)}` });
    }
  });
}
