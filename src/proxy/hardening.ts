// Request-path hardening: the defaults that keep a request from meaning one thing to the gateway and
// another to the upstream, each with a documented opt-out (global `hardening:` and per route). Modelled on
// Spring Security's StrictHttpFirewall (`;`, `%25`), nginx's and Envoy's underscore-header rules, and the
// header lists proxies strip from untrusted peers. The checks themselves run in the gateway (they need the
// route); this module owns the schema, the compiled rules and the pure helpers.
import { array, object, oneOf, optional, string, withDefault, type Infer } from '../config/schema.ts';
import type { HeaderMap } from '../contract/context.ts';

/** Reasons of the gateway's own refusals that this module's defaults add. */
export const HARDENING_REASONS = [
  'path_parameter', // `;` in a path segment
  'encoded_percent', // %25 in the path (double encoding)
  'ambiguous_path', // another spelling (case, trailing slash, parameters) takes a different route
  'method_not_allowed', // TRACE/TRACK/CONNECT on a route that does not list them
  'method_override', // X-HTTP-Method-Override & co. or `_method=` on a route that restricts methods
  'duplicate_host', // two Host fields, or Host and :authority disagreeing
  'invalid_websocket_handshake', // Upgrade: websocket without a valid RFC 6455 handshake
  'upstream_invalid_upgrade', // the upstream's 101 did not complete the WebSocket handshake
] as const;

const HEADER = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+\*?$/;

/**
 * Headers a client must not be able to set, removed from requests of peers outside `trusted_proxies`
 * before any filter sees them. A trailing `*` is a prefix.
 */
export const UNTRUSTED_HEADERS: readonly string[] = [
  // client address claims (the gateway sets X-Forwarded-For itself)
  'true-client-ip', 'x-client-ip', 'x-cluster-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-originating-ip',
  'x-remote-ip', 'x-remote-addr', 'client-ip', 'x-real-ip', 'x-forwarded', 'forwarded-for', 'x-forwarded-*', 'forwarded',
  'x-proxyuser-ip', 'x-original-forwarded-for',
  // URL and host overrides that frameworks honour (IIS/Symfony/Laravel, WSGI prefix, Spring's X-Forwarded-Prefix)
  'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-override-url', 'x-original-host', 'x-host', 'x-script-name',
  'x-http-destinationurl', 'front-end-https', 'x-url-scheme',
  // method overrides (refused on routes that restrict methods: see method_override)
  'x-http-method-override', 'x-http-method', 'x-method-override',
  // internal routing and trust signals of other proxies and frameworks
  'x-envoy-*', 'x-amzn-*', 'x-middleware-subrequest', 'x-invoke-*', 'x-now-*', 'x-vercel-*', 'x-kong-*', 'x-accel-*',
  'x-sendfile-type', 'x-portcullis-*',
  // the client certificate the gateway verified (also covered by x-forwarded-*, named for the docs)
  'x-forwarded-client-cert',
];

/**
 * Headers removed from every peer, trusted proxies included, and never kept by `keep_headers`: the
 * gateway alone states them. X-Forwarded-Client-Cert carries the client certificate the gateway verified
 * (set only then); a proxy in front cannot vouch for a certificate the gateway did not see.
 */
export const GATEWAY_ONLY_HEADERS: readonly string[] = ['x-forwarded-client-cert'];

export const METHOD_OVERRIDE_HEADERS: readonly string[] = ['x-http-method-override', 'x-http-method', 'x-method-override'];

const fields = {
  mode: oneOf(['enforce', 'report'] as const, { description: 'enforce refuses; report logs what would be refused (a warn line with the reason) and lets the request through. Header removal is always enforced.' }),
  path_parameters: oneOf(['refuse', 'allow'] as const, {
    description: 'A `;` (or %3B) in a path segment. Tomcat, Jetty and Spring cut `;...` off a segment, so `/public/..;/admin` is `/admin` to them: refuse (400 path_parameter). allow: routed as an ordinary character, and still refused (ambiguous_path) when the path without parameters would take another route.',
  }),
  encoded_percent: oneOf(['refuse', 'allow'] as const, {
    description: 'A %25 in the path (`%252e%252e`): an upstream that decodes twice sees another path. refuse: 400 encoded_percent. allow: forwarded as is; only for upstreams known to decode once.',
  }),
  path_spelling: oneOf(['refuse_ambiguous', 'allow'] as const, {
    description: 'refuse_ambiguous: a request whose lower-case, trailing-slash-free spelling would take a different route than its own spelling is refused (400 ambiguous_path), so /Login or /login/ cannot escape the protections of /login on an upstream that ignores case or the slash. On a route, it is that route\'s spellings that are protected; allow: this route does not claim other spellings of its path (a case-sensitive upstream).',
  }),
  method_override: oneOf(['refuse', 'allow'] as const, {
    description: 'X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override and a `_method` query parameter. refuse: on a route that restricts methods they get 400 method_override; elsewhere the headers are removed. allow: forwarded, and on a route that restricts methods the named method must be one of them (405 otherwise).',
  }),
  underscore_headers: oneOf(['drop', 'allow'] as const, {
    description: 'Request header names with `_` (X_User_Id), which CGI, WSGI and others read as `-`, so they would pass for a header the gateway sets. drop (as nginx and Envoy do) or allow.',
  }),
  keep_headers: array(string({ pattern: HEADER, patternName: 'header name' }), {
    single: true,
    description: 'Names from the untrusted-header list (see docs/security.md) to forward from untrusted peers anyway.',
  }),
  strip_headers: array(string({ pattern: HEADER, patternName: 'header name (a trailing * is a prefix)' }), {
    single: true,
    description: 'More header names (a trailing * is a prefix) removed from untrusted peers, besides the built-in list.',
  }),
};

export const hardeningSchema = withDefault(
  object(
    {
      mode: withDefault(fields.mode, 'enforce'),
      path_parameters: withDefault(fields.path_parameters, 'refuse'),
      encoded_percent: withDefault(fields.encoded_percent, 'refuse'),
      path_spelling: withDefault(fields.path_spelling, 'refuse_ambiguous'),
      method_override: withDefault(fields.method_override, 'refuse'),
      underscore_headers: withDefault(fields.underscore_headers, 'drop'),
      keep_headers: withDefault(fields.keep_headers, []),
      strip_headers: withDefault(fields.strip_headers, []),
    },
    { description: 'Request-path hardening defaults for every route (docs/security.md lists each, its opt-out and the risk).' },
  ),
  {
    mode: 'enforce', path_parameters: 'refuse', encoded_percent: 'refuse', path_spelling: 'refuse_ambiguous',
    method_override: 'refuse', underscore_headers: 'drop', keep_headers: [], strip_headers: [],
  },
);

export const routeHardeningSchema = object(
  {
    mode: optional(fields.mode),
    path_parameters: optional(fields.path_parameters),
    encoded_percent: optional(fields.encoded_percent),
    path_spelling: optional(fields.path_spelling),
    method_override: optional(fields.method_override),
    underscore_headers: optional(fields.underscore_headers),
    keep_headers: optional(fields.keep_headers),
  },
  { description: 'This route\'s exceptions to the global `hardening` defaults (a key given here wins).' },
);

export type HardeningConfig = Infer<typeof hardeningSchema>;
export type RouteHardeningConfig = Infer<typeof routeHardeningSchema>;

/** Compiled rules of one route (global defaults merged with the route's exceptions). */
export interface RouteHardening {
  readonly report: boolean;
  readonly allowPathParameters: boolean;
  readonly allowEncodedPercent: boolean;
  readonly protectSpelling: boolean;
  readonly allowMethodOverride: boolean;
  /** Scrubbed headers this route forwards anyway (lower case), or null. */
  readonly keep: ((name: string) => boolean) | null;
}

export function compileRouteHardening(global: HardeningConfig, route: RouteHardeningConfig | undefined): RouteHardening {
  const r: Partial<RouteHardeningConfig> = route ?? {};
  const keepNames = (r.keep_headers ?? global.keep_headers).map((h) => h.toLowerCase());
  const allowUnderscore = (r.underscore_headers ?? global.underscore_headers) === 'allow';
  const allowOverride = (r.method_override ?? global.method_override) === 'allow';
  const listedKeep = keepNames.length ? headerMatcher(keepNames) : null;
  const keepMatch = listedKeep === null ? null : (name: string) => listedKeep(name) && !GATEWAY_ONLY_HEADERS.includes(name);
  let keep: ((name: string) => boolean) | null = null;
  if (keepMatch !== null || allowUnderscore || allowOverride) {
    keep = (name) =>
      (keepMatch !== null && keepMatch(name)) || (allowUnderscore && name.includes('_')) ||
      (allowOverride && METHOD_OVERRIDE_HEADERS.includes(name));
  }
  return Object.freeze({
    report: (r.mode ?? global.mode) === 'report',
    allowPathParameters: (r.path_parameters ?? global.path_parameters) === 'allow',
    allowEncodedPercent: (r.encoded_percent ?? global.encoded_percent) === 'allow',
    protectSpelling: (r.path_spelling ?? global.path_spelling) === 'refuse_ambiguous',
    allowMethodOverride: allowOverride,
    keep,
  });
}

/** Exact names and `prefix*` patterns (lower case) → one predicate. */
export function headerMatcher(patterns: readonly string[]): (name: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  // Only names starting like some prefix walk the prefix list (most headers start with none of them).
  const firstChars = new Uint8Array(128);
  for (const p of prefixes) firstChars[p.charCodeAt(0) & 0x7f] = 1;
  return (name) => {
    if (exact.has(name)) return true;
    if (prefixes.length === 0 || firstChars[name.charCodeAt(0) & 0x7f] === 0) return false;
    for (let i = 0; i < prefixes.length; i++) if (name.startsWith(prefixes[i]!)) return true;
    return false;
  };
}

/**
 * What the gateway removes from untrusted peers' requests before routing: the built-in list plus the
 * policy's `strip_headers`, and names with `_` unless every route allows them. A cheap first test keeps
 * the common header (no `x-`, no `_`, not in the list) to one Set lookup and two character tests.
 */
export function compileScrubber(global: HardeningConfig): (name: string, trustedPeer: boolean) => boolean {
  const patterns = [...UNTRUSTED_HEADERS, ...global.strip_headers.map((h) => h.toLowerCase())];
  const listed = headerMatcher(patterns);
  // `_` names and method overrides are dropped from every peer (a proxy in front passes a client's on);
  // a route that allows them takes them back (RouteHardening.keep).
  const fromEveryPeer = new Set([...METHOD_OVERRIDE_HEADERS, ...GATEWAY_ONLY_HEADERS]);
  return (name, trustedPeer) => name.includes('_') || (trustedPeer ? fromEveryPeer.has(name) : listed(name));
}

/** The method a method-override signal names, or null: headers first, then `_method` in the query. */
export function overrideMethod(headers: Readonly<HeaderMap> | null, query: string): string | null {
  if (headers !== null) {
    for (const h of METHOD_OVERRIDE_HEADERS) {
      const v = headers[h];
      if (v !== undefined) return (Array.isArray(v) ? v[0]! : v).trim().toUpperCase();
    }
  }
  if (query.length > 8 && query.includes('_method=')) {
    const v = new URLSearchParams(query.slice(1)).get('_method');
    if (v !== null) return v.trim().toUpperCase();
  }
  return null;
}
