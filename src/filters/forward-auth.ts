// Forward-auth provider: asks an HTTP service whether to let a request through. The service gets the
// method, URI and chosen headers; 2xx lets the request in (copying chosen response headers upstream),
// 401/403 are passed to the client, anything else (or a timeout) is retried with exponential backoff and
// jitter, and a service that stays down yields 503 `auth_unavailable`. Decisions are cached per credential.
import { rootCertificates } from 'node:tls';
import { undici } from '../proxy/undici.ts';
import { readFileSync } from 'node:fs';
import { array, duration, integer, object, optional, size, string, url, withDefault, type Infer, type Path } from '../config/schema.ts';
import { bearerChallenge, forbiddenDenies, stringSet, type AuthProvider, type Grants } from '../auth/provider.ts';
import { TokenCache, tokenKey } from '../auth/token-cache.ts';
import type { RequestContext } from '../contract/context.ts';
import type { CompileEnv, Deny, Verdict } from '../contract/filter.ts';

export const FORWARD_AUTH_REASONS = ['auth_denied', 'auth_unavailable', 'auth_header_invalid'] as const;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const header = (description: string) => string({ pattern: HEADER_NAME, patternName: 'header name', description });

export const forwardProviderSchema = object({
  url: url({ protocols: ['http:', 'https:'], description: 'The auth service endpoint; asked with GET and X-Forwarded-Method/-Uri/-Host/-Proto/-For.' }),
  timeout: withDefault(duration({ min: 1, description: 'Timeout of one attempt.' }), 5_000),
  attempts: withDefault(integer({ min: 1, max: 10, description: 'Attempts before answering 503 auth_unavailable.' }), 3),
  backoff: withDefault(duration({ description: 'Delay before the second attempt; doubles each time, with jitter.' }), 200),
  max_backoff: withDefault(duration({ description: 'Longest delay between attempts.' }), 2_000),
  forward_headers: withDefault(array(header('Request header sent to the service.'), { single: true, description: 'Request headers sent to the service (the credential; decisions are cached per their values).' }), ['Authorization', 'Cookie']),
  copy_headers: withDefault(array(header('Service response header copied upstream.'), { single: true, description: 'Service response headers copied to the upstream request; client-sent copies are removed first.' }), []),
  subject_header: optional(header('Service response header naming the subject (logs, audit, rate limits).')),
  roles_header: optional(header('Service response header listing roles (comma or space separated), for authorize.')),
  scopes_header: optional(header('Service response header listing scopes, for authorize.')),
  cache_ttl: withDefault(duration({ description: 'How long a decision is cached per credential; 0 asks every time.' }), 0),
  cache_size: withDefault(integer({ min: 0, description: 'Decisions kept at most.' }), 10_000),
  ca: optional(string({ description: 'CA certificate (PEM file path or PEM text) trusted for an https service.' })),
  max_header_size: withDefault(size({ description: 'Longest copied header value; longer, or with CR/LF, refuses the request.' }), 4096),
});

export type ForwardProviderConfig = Infer<typeof forwardProviderSchema>;

interface Decision {
  readonly deny: Deny | null;
  readonly subject: string | null;
  readonly claims: Readonly<Record<string, unknown>> | null;
  readonly headers: readonly (readonly [string, string])[];
}

const UNSAFE = /[\x00-\x1f\x7f]/;

function splitList(v: string): string[] {
  return v.split(/[\s,]+/).filter((s) => s.length > 0);
}

export function createForwardProvider(name: string, cfg: ForwardProviderConfig, path: Path, env: CompileEnv): AuthProvider {
  let ca: string | undefined;
  if (cfg.ca !== undefined) {
    try {
      ca = cfg.ca.includes('-----BEGIN') ? cfg.ca : readFileSync(cfg.ca, 'utf8');
    } catch (err) {
      env.problem([...path, 'ca'], `cannot read CA file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  if (env.mode === 'production' && cfg.url.protocol === 'http:' && !/^(127\.|localhost$|\[::1\]$)/.test(cfg.url.hostname)) {
    env.telemetry.log.warn({ provider: name }, 'forward auth over plain http to a non-loopback host: credentials cross the network in clear');
  }
  // An extra CA is trusted besides the system ones (Node's `ca` option alone would replace them).
  const { Agent, request } = undici();
  const agent = new Agent({ connect: { ca: ca !== undefined ? [...rootCertificates, ca] : undefined, timeout: cfg.timeout }, headersTimeout: cfg.timeout, bodyTimeout: cfg.timeout });
  env.onClose(() => agent.close());
  const metrics = env.telemetry.metrics;
  const decisions = metrics.counter('portcullis_forward_auth_decisions_total', 'Forward-auth decisions by provider, decision (allow, deny, unavailable) and source (service, cache).', ['provider', 'decision', 'source']);
  const failures = metrics.counter('portcullis_forward_auth_failures_total', 'Failed forward-auth attempts by provider and reason (timeout, error, status).', ['provider', 'reason']);
  const count = {
    allowService: decisions.labels({ provider: name, decision: 'allow', source: 'service' }),
    denyService: decisions.labels({ provider: name, decision: 'deny', source: 'service' }),
    allowCache: decisions.labels({ provider: name, decision: 'allow', source: 'cache' }),
    denyCache: decisions.labels({ provider: name, decision: 'deny', source: 'cache' }),
    unavailable: decisions.labels({ provider: name, decision: 'unavailable', source: 'service' }),
    timeout: failures.labels({ provider: name, reason: 'timeout' }),
    error: failures.labels({ provider: name, reason: 'error' }),
    status: failures.labels({ provider: name, reason: 'status' }),
  };

  const forward = cfg.forward_headers.map((h) => h.toLowerCase());
  const copy = cfg.copy_headers.map((h) => h.toLowerCase());
  const subjectHeader = cfg.subject_header?.toLowerCase();
  const rolesHeader = cfg.roles_header?.toLowerCase();
  const scopesHeader = cfg.scopes_header?.toLowerCase();
  // Every identity header named here is the gateway's: client-sent copies never reach the upstream, even
  // those (subject/roles/scopes) that are read from the service but not copied.
  const owned = [...new Set([...copy, ...[subjectHeader, rolesHeader, scopesHeader].filter((h): h is string => h !== undefined)])];
  const cache = new TokenCache<Decision>(cfg.cache_ttl > 0 ? cfg.cache_size : 0);
  const realm = name.replace(/["\\]/g, '');
  const unavailable: Deny = Object.freeze({ status: 503, reason: 'auth_unavailable', headers: Object.freeze({ 'retry-after': '5' }) });
  const badHeader: Deny = Object.freeze({ status: 502, reason: 'auth_header_invalid' });
  const serviceUrl = cfg.url.href;
  // For the admin dashboard: the last answer and the last failure of the service (epoch ms), one field
  // write per call to the service (never per cached decision).
  const seen = { answerAt: null as number | null, failureAt: null as number | null, failure: null as string | null };
  env.status?.(`forward_auth:${name}`, () => ({
    kind: 'forward_auth',
    provider: name,
    url: serviceUrl.replace(/\/\/[^/@]*@/, '//********@'),
    state: seen.answerAt === null && seen.failureAt === null ? 'not_called_yet' : (seen.failureAt ?? 0) > (seen.answerAt ?? 0) ? 'failing' : 'answering',
    last_answer: seen.answerAt,
    last_failure: seen.failureAt,
    last_failure_reason: seen.failure,
  }));

  function credentialOf(ctx: RequestContext): string {
    let out = '';
    for (const h of forward) {
      const v = ctx.requestHeaders[h];
      if (v !== undefined) out += `${h}\n${Array.isArray(v) ? v.join('\n') : v}\n`;
    }
    return out;
  }

  async function askOnce(ctx: RequestContext): Promise<Decision | 'retry'> {
    const headers: Record<string, string> = {
      'x-forwarded-method': ctx.method,
      'x-forwarded-uri': ctx.path + ctx.query,
      'x-forwarded-host': ctx.host,
      'x-forwarded-proto': ctx.scheme,
      'x-forwarded-for': ctx.clientIp,
    };
    if (ctx.id) headers['x-request-id'] = ctx.id;
    for (const h of forward) {
      const v = ctx.requestHeaders[h];
      if (v !== undefined) headers[h] = Array.isArray(v) ? v.join(h === 'cookie' ? '; ' : ', ') : v;
    }
    let res;
    try {
      res = await request(serviceUrl, { method: 'GET', headers, dispatcher: agent, signal: AbortSignal.timeout(cfg.timeout) });
    } catch (err) {
      const e = err as { name?: string; code?: string };
      const timeout = e?.name === 'TimeoutError' || e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_CONNECT_TIMEOUT' || e?.name === 'AbortError';
      if (timeout) count.timeout.inc();
      else count.error.inc();
      seen.failureAt = Date.now();
      seen.failure = timeout ? 'timeout' : (e?.code ?? 'error');
      return 'retry';
    }
    res.body.dump().catch(() => undefined);
    const s = res.statusCode;
    if (s >= 500) {
      seen.failureAt = Date.now();
      seen.failure = `status ${s}`;
    } else seen.answerAt = Date.now();
    if (s === 401 || s === 403) {
      const challenge = res.headers['www-authenticate'];
      const text = typeof challenge === 'string' && !UNSAFE.test(challenge) ? challenge : s === 401 ? bearerChallenge(realm) : undefined;
      const deny: Deny = Object.freeze(text !== undefined ? { status: s, reason: 'auth_denied', headers: { 'www-authenticate': text } } : { status: s, reason: 'auth_denied' });
      return { deny, subject: null, claims: null, headers: [] };
    }
    if (s < 200 || s >= 300) {
      count.status.inc();
      return 'retry';
    }
    const copied: (readonly [string, string])[] = [];
    for (const h of copy) {
      const v = res.headers[h];
      if (v === undefined) continue;
      // Several field lines are one comma list (RFC 9110 5.3) only when no line holds a comma itself;
      // otherwise where one value ends is ambiguous to the upstream, so the answer is refused.
      if (Array.isArray(v) && v.some((line) => line.includes(','))) return { deny: badHeader, subject: null, claims: null, headers: [] };
      const text = Array.isArray(v) ? v.join(', ') : v;
      if (text.length > cfg.max_header_size || UNSAFE.test(text)) return { deny: badHeader, subject: null, claims: null, headers: [] };
      copied.push([h, text]);
    }
    const one = (h: string | undefined) => {
      if (h === undefined) return undefined;
      const v = res.headers[h];
      return Array.isArray(v) ? v.join(',') : v;
    };
    // The subject is one value: two subject lines (or a list) cannot say who the user is.
    if (subjectHeader !== undefined && Array.isArray(res.headers[subjectHeader])) return { deny: badHeader, subject: null, claims: null, headers: [] };
    const subject = one(subjectHeader) ?? null;
    const claims: Record<string, unknown> = {};
    if (subject !== null) claims.sub = subject;
    const roles = one(rolesHeader);
    if (roles !== undefined) claims.roles = splitList(roles);
    const scopes = one(scopesHeader);
    if (scopes !== undefined) claims.scope = splitList(scopes).join(' ');
    return { deny: null, subject, claims: Object.freeze(claims), headers: copied };
  }

  function delay(attempt: number): Promise<void> {
    const base = Math.min(cfg.max_backoff, cfg.backoff * 2 ** (attempt - 1));
    const ms = base / 2 + Math.random() * (base / 2); // "equal jitter": spread retries of many gateways
    return new Promise((r) => setTimeout(r, ms));
  }

  function apply(ctx: RequestContext, d: Decision): Verdict {
    if (d.deny !== null) return d.deny;
    ctx.subject = d.subject;
    ctx.claims = d.claims;
    const up = ctx.upstreamHeaders;
    for (let i = 0; i < d.headers.length; i++) up[d.headers[i]![0]] = d.headers[i]![1];
    return undefined;
  }

  /** Asks the service, with retries; null when it stayed unavailable. */
  async function decide(ctx: RequestContext, key: string | null): Promise<Decision | null> {
    for (let attempt = 1; attempt <= cfg.attempts; attempt++) {
      if (attempt > 1) await delay(attempt - 1);
      const d = await askOnce(ctx);
      if (d === 'retry') continue;
      (d.deny === null ? count.allowService : count.denyService).inc();
      if (key !== null && d.deny !== badHeader) cache.set(key, d, Date.now() + cfg.cache_ttl);
      return d;
    }
    count.unavailable.inc();
    return null;
  }

  // With caching on, concurrent requests of one credential share one question to the service.
  const pending = new Map<string, Promise<Decision | null>>();

  function ask(ctx: RequestContext, key: string | null): Promise<Verdict> {
    let p = key !== null ? pending.get(key) : undefined;
    if (p === undefined) {
      p = decide(ctx, key);
      if (key !== null) {
        const k = key;
        pending.set(k, p);
        void p.finally(() => pending.delete(k));
      }
    }
    return p.then((d) => (d === null ? unavailable : apply(ctx, d)));
  }

  function authenticate(ctx: RequestContext): Verdict | Promise<Verdict> {
    const up = ctx.upstreamHeaders;
    for (let i = 0; i < owned.length; i++) delete up[owned[i]!];
    let key: string | null = null;
    if (cfg.cache_ttl > 0) {
      const credential = credentialOf(ctx);
      if (credential !== '') {
        key = tokenKey(credential);
        const hit = cache.get(key, Date.now());
        if (hit !== undefined) {
          (hit.deny === null ? count.allowCache : count.denyCache).inc();
          return apply(ctx, hit);
        }
      }
    }
    return ask(ctx, key);
  }

  const memo = new WeakMap<object, Grants>();
  return {
    name,
    filterName: 'forward_auth',
    authenticate,
    explainable: false, // asks the service
    grants(claims) {
      let g = memo.get(claims);
      if (g === undefined) {
        g = { roles: stringSet(claims.roles), scopes: stringSet(claims.scope) };
        memo.set(claims, g);
      }
      return g;
    },
    carries: { roles: rolesHeader !== undefined, scopes: scopesHeader !== undefined },
    ownedHeaders: owned,
    forbidden: forbiddenDenies(),
    describe: () => ({
      provider: name,
      type: 'forward',
      url: serviceUrl.replace(/\/\/[^/@]*@/, '//********@'),
      timeout_ms: cfg.timeout,
      attempts: cfg.attempts,
      backoff_ms: cfg.backoff,
      forward_headers: forward,
      copy_headers: copy,
      cache_ttl_ms: cfg.cache_ttl,
    }),
  };
}
