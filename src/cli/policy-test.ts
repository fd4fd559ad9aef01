// `portcullis test POLICY CASES.yaml`: runs policy test cases through the compiled policy in-process (the
// same router and filter chains the gateway runs, no listener, no upstream) and compares the outcome with
// what each case expects. Claims in a case are minted into a token signed with the provider's key.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isSeq, type Node } from 'yaml';
import { loadAndCompile, type CompiledPolicy } from '../policy/compile.ts';
import { parseDuration } from '../config/schema.ts';
import { runChain } from '../filters/chain.ts';
import { Metrics } from '../observability/metrics.ts';
import { reportDeny, RequestContext } from '../contract/context.ts';
import type { ClientCertificate, ClientCertProblem } from '../contract/client-cert.ts';
import { statedClientCertificate } from '../proxy/client-cert.ts';
import { upstreamHeadersFrom } from '../proxy/headers.ts';
import { normalizeTarget } from '../proxy/normalize.ts';
import { RequestBody } from '../proxy/request-body.ts';
import { hardeningRefusal, restoreKeptHeaders, routeRequest } from '../server/admission.ts';
import { hostname } from '../server/gateway.ts';
import { quietTelemetry } from './quiet-telemetry.ts';
import { mintToken } from './token.ts';
import { COOKIE_CHUNK, SessionCodec } from '../auth/oidc/codec.ts';

export interface SimulatedRequest {
  method?: string;
  /** Path with optional query, or an absolute URL. */
  path: string;
  host?: string;
  headers?: Record<string, string>;
  clientIp?: string;
  /** The connection's client certificate (as a listener with client_ca verified it), or none. */
  clientCert?: ClientCertificate | null;
  /** Request body, for filters that read its first bytes (rate-limit keys from body fields). */
  body?: string;
}

export interface Outcome {
  status: number;
  /** null when the request would be forwarded. */
  reason: string | null;
  filter: string | null;
  headers: Record<string, string | string[] | undefined>;
  ctx: RequestContext | null;
}

/** What the gateway would do with a request: forward (status 0, reason null) or answer with a reason. */
export async function simulateRequest(policy: CompiledPolicy, req: SimulatedRequest): Promise<Outcome> {
  const method = (req.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  const host = req.host ?? headers.host ?? 'localhost';
  headers.host = host;
  // A case's body is sent with its length, as clients send small bodies.
  if (req.body !== undefined && headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
  const ctx = new RequestContext(method, '1.1', headers, req.clientIp ?? '127.0.0.1', 'https', performance.now());
  ctx.upstreamHeaders = upstreamHeadersFrom(headers, false, policy.scrub, ctx);
  ctx.clientCert = req.clientCert ?? null;
  const answer = (status: number, reason: string, filter: string, extra: Record<string, string | string[] | undefined> = {}): Outcome =>
    ({ status, reason, filter, headers: { ...ctx.responseHeaders, ...extra }, ctx });
  if (policy.globalRequest !== null) {
    const d = await runChain(policy.globalRequest, policy.globalNames, ctx);
    if (d) return answer(d.status, d.reason, ctx.deny?.filter ?? 'gateway', d.headers);
  }
  const target = normalizeTarget(req.path);
  if (typeof target === 'string') return answer(400, target, 'gateway');
  ctx.path = target.path;
  ctx.query = target.query;
  ctx.targetFlags = target.flags;
  ctx.authority = host;
  ctx.host = hostname(host);
  if (method === 'CONNECT') return answer(405, 'method_not_allowed', 'gateway');
  const routed = routeRequest(policy, ctx.host, method, ctx.path, ctx.requestHeaders);
  if (routed === null) return answer(404, 'route_not_found', 'gateway');
  if (routed.route === null) return answer(routed.refusal.status, routed.refusal.reason, 'gateway', routed.refusal.headers);
  const route = routed.route;
  ctx.route = route;
  const refused = hardeningRefusal(policy, route, ctx, routed.method);
  if (refused !== null && !route.hardening.report) return answer(refused.status, refused.reason, 'gateway', refused.headers);
  if (refused === null) restoreKeptHeaders(route, ctx);
  else reportDeny(ctx, 'gateway', refused.reason);
  if (route.readsBody && req.body !== undefined) ctx.body = new RequestBody(oneChunk(Buffer.from(req.body)), () => undefined);
  if (route.request !== null) {
    const d = await runChain(route.request, route.requestNames, ctx);
    if (d) return answer(d.status, d.reason, ctx.deny?.filter ?? 'gateway', d.headers);
  }
  if (route.respond !== null) {
    const r = route.respond;
    // A 2xx direct answer is an answer, not a refusal: its "reason" in a case is the status alone.
    return answer(r.status, r.reason ?? 'direct_response', 'respond', r.body !== null ? { 'content-type': r.contentType } : {});
  }
  if (route.upstream === null) return answer(404, 'route_not_found', 'gateway');
  return { status: 0, reason: null, filter: null, headers: ctx.responseHeaders, ctx };
}

async function* oneChunk(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

// ---- cases file ----

interface SigningKey {
  secret?: string;
  secretEncoding?: 'utf8' | 'base64' | 'base64url' | 'hex';
  privateKey?: string;
  kid?: string;
  alg?: string;
}

interface CaseResult {
  line: number;
  name: string;
  ok: boolean;
  message: string;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

/** The key a case's claims are signed with: the provider's first inline secret, or `signing_keys` in the cases file. */
function signingKeysOf(policy: CompiledPolicy, fromCases: Record<string, unknown>, casesDir: string): Map<string, SigningKey> {
  const out = new Map<string, SigningKey>();
  const auth = (policy.policy as Record<string, unknown>).auth as { providers?: Record<string, { jwt?: { keys?: { kid?: string; secret?: string; secret_encoding?: SigningKey['secretEncoding']; algorithm?: string }[]; algorithms: string[] } }> } | undefined;
  for (const [name, p] of Object.entries(auth?.providers ?? {})) {
    const k = p.jwt?.keys?.find((key) => key.secret !== undefined);
    if (k) out.set(name, { secret: k.secret, secretEncoding: k.secret_encoding, kid: k.kid, alg: k.algorithm ?? p.jwt!.algorithms.find((a) => a.startsWith('HS')) });
  }
  for (const [name, raw] of Object.entries(fromCases)) {
    const v = raw as Record<string, unknown>;
    const file = str(v.private_key_file);
    out.set(name, {
      secret: str(v.secret),
      privateKey: file !== undefined ? readFileSync(resolve(casesDir, file), 'utf8') : str(v.private_key),
      kid: str(v.kid),
      alg: str(v.algorithm),
    });
  }
  return out;
}

/** The settings of provider `name` when it is an OIDC provider. */
function oidcOf(policy: CompiledPolicy, name: string): { cookie_secrets: string[]; cookie_name?: string; session_store?: string } | undefined {
  const auth = (policy.policy as Record<string, unknown>).auth as { providers?: Record<string, { oidc?: { cookie_secrets: string[]; cookie_name?: string; session_store?: string } }> } | undefined;
  return auth?.providers?.[name]?.oidc;
}

/** The provider a request would meet: the matched route's `auth`, else `auth.default`, else the only provider. */
type Ref = string | { provider?: string; any_of?: string[] };

function providerFor(policy: CompiledPolicy, method: string, path: string, host: string, iss: unknown): string | undefined {
  const p = policy.policy as Record<string, unknown> & { routes: Record<string, unknown>[] };
  const auth = p.auth as { default?: Ref; providers?: Record<string, { jwt?: { issuer?: string[] } }> } | undefined;
  // any_of: the provider whose issuer is the claims' iss (else the first).
  const pick = (ref: Ref): string | undefined => {
    if (typeof ref === 'string') return ref;
    if (ref.provider !== undefined) return ref.provider;
    const list = ref.any_of ?? [];
    return list.find((n) => typeof iss === 'string' && auth?.providers?.[n]?.jwt?.issuer?.includes(iss)) ?? list[0];
  };
  const target = normalizeTarget(path);
  if (typeof target !== 'string') {
    const route = policy.router.match(hostname(host), method, target.path);
    const ref = route !== null ? (route.config.auth as Ref | undefined) : undefined;
    if (ref !== undefined) return pick(ref);
  }
  const d = auth?.default;
  if (d !== undefined) return pick(d);
  const names = Object.keys(auth?.providers ?? {});
  return names.length === 1 ? names[0] : undefined;
}

const CERT_STATES: Record<string, ClientCertProblem | null> = {
  verified: null, untrusted: 'client_cert_untrusted', expired: 'client_cert_expired', revoked: 'client_cert_revoked',
};

/**
 * A case's `client_cert: { cn, dns, uris, state }`: the certificate the connection presented, as the
 * listener verified it (state verified by default; untrusted, expired, revoked), or `none`.
 */
function statedCert(v: unknown): ClientCertificate | null | string {
  if (v === 'none' || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) return '"client_cert" must be none or { cn, dns, uris, state }';
  const o = v as Record<string, unknown>;
  const list = (x: unknown): string[] | undefined => (x === undefined ? undefined : (Array.isArray(x) ? x : [x]).map(String));
  const state = str(o.state) ?? 'verified';
  if (!(state in CERT_STATES)) return `"client_cert.state" must be one of ${Object.keys(CERT_STATES).join(', ')}`;
  return statedClientCertificate({ cn: str(o.cn), dns: list(o.dns), uris: list(o.uris) }, CERT_STATES[state]!);
}

export async function runPolicyTests(policyFile: string, casesFile: string): Promise<{ ok: boolean; output: string; results: CaseResult[] }> {
  const text = readFileSync(casesFile, 'utf8');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(e.pos[0]);
    return { ok: false, output: `${casesFile}:${pos.line}:${pos.col}: YAML: ${e.message.split('\n')[0]}\n`, results: [] };
  }
  const root = (doc.toJS() ?? {}) as { cases?: unknown[]; signing_keys?: Record<string, unknown>; env?: Record<string, unknown> };
  const casesNode = doc.get('cases', true) as Node | undefined;
  if (!Array.isArray(root.cases) || !isSeq(casesNode)) return { ok: false, output: `${casesFile}:1:1: expected a "cases" list\n`, results: [] };

  // `env:` in the cases file gives test values to variables the policy references and the environment lacks.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(root.env ?? {})) env[k] = String(v);
  const policy = loadAndCompile(policyFile, { telemetry: quietTelemetry(new Metrics({ defaultMetrics: false })) }, { ...env, ...process.env });
  const results: CaseResult[] = [];
  try {
    await policy.ready;
    const keys = signingKeysOf(policy, root.signing_keys ?? {}, dirname(resolve(casesFile)));
    for (let i = 0; i < root.cases.length; i++) {
      const c = (root.cases[i] ?? {}) as Record<string, unknown>;
      const node = casesNode.items[i] as Node | undefined;
      const line = node?.range ? lineCounter.linePos(node.range[0]).line : 0;
      const name = str(c.name) ?? `case ${i + 1}`;
      const fail = (message: string) => results.push({ line, name, ok: false, message });
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries((c.headers ?? {}) as Record<string, unknown>)) headers[k] = String(v);
      if (c.claims !== undefined) {
        const provider = str(c.provider) ?? providerFor(policy, (str(c.method) ?? 'GET').toUpperCase(), str(c.path) ?? '/', str(c.host) ?? 'localhost', (c.claims as Record<string, unknown>).iss);
        const oidc = provider !== undefined ? oidcOf(policy, provider) : undefined;
        if (oidc !== undefined) {
          // An OIDC provider: the claims become a signed-in session, sealed into its cookie.
          if (oidc.session_store === 'redis') {
            fail(`cannot make a session for provider ${provider}: its sessions live in Redis (cases can sign in with session_store: cookie only)`);
            continue;
          }
          const ttl = c.token_ttl !== undefined ? parseDuration(String(c.token_ttl)) ?? 15 * 60_000 : 15 * 60_000;
          const claims = c.claims as Record<string, unknown>;
          const now = Date.now();
          const session = { sub: String(claims.sub ?? 'test-user'), claims, created: now, seen: now, expires: now + ttl, rt: null, idt: null, end: now + ttl };
          const sealed = await new SessionCodec(oidc.cookie_secrets, provider!).seal('session', session, now + ttl);
          const cookie = `${oidc.cookie_name ?? `__Host-portcullis-${provider}`}=${sealed}`;
          headers.cookie = headers.cookie ? `${headers.cookie}; ${cookie}` : cookie;
          if (sealed.length > COOKIE_CHUNK) {
            fail('the claims make a session cookie longer than one cookie piece; use fewer claims in the case');
            continue;
          }
        }
        const key = provider !== undefined && oidc === undefined ? keys.get(provider) : undefined;
        if (oidc === undefined && key === undefined) {
          fail(`cannot mint a token: no signing key for provider ${provider ?? '(none)'}; give signing_keys.${provider ?? 'NAME'} in the cases file`);
          continue;
        }
        if (key !== undefined) {
          const ttl = c.token_ttl !== undefined ? parseDuration(String(c.token_ttl)) : 15 * 60_000;
          const token = await mintToken({ ...key, claims: c.claims as Record<string, unknown>, ttlMs: ttl ?? 15 * 60_000 });
          headers.authorization = `Bearer ${token}`;
        }
      }
      let clientCert: ClientCertificate | null = null;
      if (c.client_cert !== undefined) {
        const stated = statedCert(c.client_cert);
        if (typeof stated === 'string') {
          fail(stated);
          continue;
        }
        clientCert = stated;
      }
      const out = await simulateRequest(policy, { method: str(c.method), path: str(c.path) ?? '/', host: str(c.host), headers, clientCert, body: str(c.body) });
      // `reported: REASON | [REASONS] | none`: the denies of filters in report mode the request gets.
      if (c.reported !== undefined) {
        const want = c.reported === 'none' || c.reported === null ? [] : (Array.isArray(c.reported) ? c.reported : [c.reported]).map(String);
        const got = (out.ctx?.reported ?? []).map((r) => r.reason);
        if (JSON.stringify(want) !== JSON.stringify(got)) {
          fail(`expected reported ${want.length ? want.join(', ') : 'none'}, got ${got.length ? got.join(', ') : 'none'}`);
          continue;
        }
      }
      const expect = c.expect;
      const got = out.reason === null ? 'allowed' : `${out.status} ${out.reason}`;
      if (expect === 'allowed' || expect === 'allow') {
        if (out.reason !== null) fail(`expected allowed, got ${got}`);
        else results.push({ line, name, ok: true, message: 'allowed' });
      } else if (expect !== null && typeof expect === 'object') {
        const e = expect as { status?: number; reason?: string };
        const statusOk = e.status === undefined || e.status === out.status;
        const reasonOk = e.reason === undefined || e.reason === out.reason;
        if (out.reason === null || !statusOk || !reasonOk) fail(`expected ${e.status ?? ''}${e.status !== undefined && e.reason !== undefined ? ' ' : ''}${e.reason ?? ''}, got ${got}`);
        else results.push({ line, name, ok: true, message: got });
      } else {
        fail('"expect" must be "allowed" or { status, reason }');
      }
    }
  } finally {
    await policy.close();
  }
  const failed = results.filter((r) => !r.ok);
  let output = '';
  for (const r of failed) output += `${casesFile}:${r.line}: ${r.name}: ${r.message}\n`;
  output += `${results.length - failed.length} passed, ${failed.length} failed (${casesFile})\n`;
  return { ok: failed.length === 0, output, results };
}
