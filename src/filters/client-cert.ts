// Client-certificate provider: a route authenticated by the certificate its TLS connection presented on a
// listener with `tls.client_ca` (mutual TLS). The listener verified the chain (and the CRL) at the
// handshake; this provider turns its verdict into a precise deny reason, and matches the certificate's
// names (subject CN, SAN DNS, SAN URI such as SPIFFE IDs) against allow rules that map to roles and
// scopes. The decision is made once per connection and provider (cached on the parsed certificate), so a
// keep-alive connection or an HTTP/2 session pays for its rules once.
import { array, object, oneOf, optional, string, withDefault, type Infer, type Path } from '../config/schema.ts';
import { forbiddenDenies, grantsReader, type AuthProvider } from '../auth/provider.ts';
import type { ClientCertificate } from '../contract/client-cert.ts';
import type { Credential, RequestContext } from '../contract/context.ts';
import type { CompileEnv, Deny, Verdict } from '../contract/filter.ts';

export const CLIENT_CERT_REASONS = [
  'client_cert_required', // no certificate on the connection (or the listener asks for none)
  'client_cert_untrusted', // the chain does not verify against client_ca
  'client_cert_expired', // expired or not yet valid (checked per request: a session may outlive it)
  'client_cert_revoked', // listed in the CRL
  'client_cert_subject_not_allowed', // verified, but no allow rule matches its names
] as const;
export type ClientCertReason = (typeof CLIENT_CERT_REASONS)[number];

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NAME_PATTERN = /^[^\s*]*(?:\*{1,2}[^\s*]+)*\*{0,2}$/;

const nameSchema = (what: string) => string({
  minLength: 1,
  pattern: NAME_PATTERN,
  patternName: 'name or pattern (* within a label or segment, ** across them)',
  description: `${what}: exact, or a pattern where \`*\` stands for one or more characters other than \`.\` and \`/\` and \`**\` for one or more of any.`,
});

const ruleSchema = object(
  {
    cn: optional(nameSchema('Subject common name')),
    san_dns: optional(nameSchema('A SAN DNS name of the certificate (compared in lower case)')),
    san_uri: optional(nameSchema('A SAN URI of the certificate, e.g. a SPIFFE ID `spiffe://example.org/ns/billing/sa/*`')),
    roles: withDefault(array(string(), { single: true, description: 'Roles a certificate matching this rule has (for authorize).' }), []),
    scopes: withDefault(array(string(), { single: true, description: 'Scopes a certificate matching this rule has (for authorize).' }), []),
  },
  {
    description: 'An allow rule: every name given must match (a SAN rule matches when any SAN of that kind does).',
    check(v, path, issues) {
      if (v.cn === undefined && v.san_dns === undefined && v.san_uri === undefined) issues.push({ path, message: 'give at least one of "cn", "san_dns", "san_uri"' });
    },
  },
);

const SUBJECT_FIELDS = ['san_uri', 'san_dns', 'cn'] as const;
type SubjectField = (typeof SUBJECT_FIELDS)[number];

export const clientCertProviderSchema = object(
  {
    allow: array(ruleSchema, { minItems: 1, description: 'Which verified certificates are accepted: one matching rule suffices; the roles and scopes of every matching rule are granted.' }),
    subject_from: withDefault(array(oneOf(SUBJECT_FIELDS, { description: 'A certificate name.' }), { single: true, minItems: 1, description: 'Where the subject (logs, audit, rate-limit keys, `sub`) comes from: the first of these names the certificate has.' }), ['san_uri', 'san_dns', 'cn']),
    subject_header: optional(string({ pattern: HEADER_NAME, patternName: 'header name', description: 'Upstream header carrying the verified subject; client-sent copies are removed.' })),
  },
  { description: 'A client-certificate provider (mutual TLS): certificates verified by a listener with `tls.client_ca`, matched against allow rules.' },
);
export type ClientCertProviderConfig = Infer<typeof clientCertProviderSchema>;

/** A name rule: exact (a string compare) or a pattern compiled once to an anchored RegExp. */
function nameMatcher(pattern: string, lowerCase: boolean): (value: string) => boolean {
  const p = lowerCase ? pattern.toLowerCase() : pattern;
  if (!p.includes('*')) return (v) => (lowerCase ? v.toLowerCase() : v) === p;
  const source = p.split(/(\*\*|\*)/).map((part) => (part === '**' ? '.+' : part === '*' ? '[^./]+' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))).join('');
  const re = new RegExp(`^${source}$`, 's');
  return (v) => re.test(lowerCase ? v.toLowerCase() : v);
}

interface CompiledRule {
  matches(cert: ClientCertificate): boolean;
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
}

function compileRule(rule: Infer<typeof ruleSchema>): CompiledRule {
  const tests: ((cert: ClientCertificate) => boolean)[] = [];
  if (rule.cn !== undefined) {
    const m = nameMatcher(rule.cn, false);
    tests.push((c) => c.cn !== null && m(c.cn));
  }
  if (rule.san_dns !== undefined) {
    const m = nameMatcher(rule.san_dns, true);
    tests.push((c) => c.dns.some(m));
  }
  if (rule.san_uri !== undefined) {
    const m = nameMatcher(rule.san_uri, false);
    tests.push((c) => c.uris.some(m));
  }
  return { matches: (c) => tests.every((t) => t(c)), roles: rule.roles, scopes: rule.scopes };
}

/** What a verified, allowed certificate authenticates as (made once per connection and provider). */
interface Identity {
  readonly subject: string;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly credential: Credential;
}

function subjectOf(cert: ClientCertificate, from: readonly SubjectField[]): string {
  for (const f of from) {
    const v = f === 'cn' ? cert.cn : f === 'san_dns' ? cert.dns[0] : cert.uris[0];
    if (v !== undefined && v !== null && v !== '') return v;
  }
  return cert.fingerprint; // a certificate with none of the names asked for is still one identity
}

export function createClientCertProvider(name: string, cfg: ClientCertProviderConfig, _path: Path, env: CompileEnv): AuthProvider {
  const log = env.telemetry.log;
  const rules = cfg.allow.map(compileRule);
  const subjectFrom = cfg.subject_from as readonly SubjectField[];
  const subjectHeader = cfg.subject_header?.toLowerCase() ?? null;
  const denies = new Map<string, Deny>();
  // 403 throughout: HTTP has no challenge that asks for a certificate (401 would need WWW-Authenticate);
  // the client has to connect again with a valid one.
  for (const reason of CLIENT_CERT_REASONS) denies.set(reason, Object.freeze({ status: 403, reason }));
  const D = (reason: ClientCertReason): Deny => denies.get(reason)!;
  /** The memo key of this provider in each certificate's cache (a reload makes a new provider, a new key). */
  const memoKey = {};

  function decide(cert: ClientCertificate): Identity | Deny {
    const roles = new Set<string>();
    const scopes = new Set<string>();
    let allowed = false;
    for (const r of rules) {
      if (!r.matches(cert)) continue;
      allowed = true;
      for (const role of r.roles) roles.add(role);
      for (const s of r.scopes) scopes.add(s);
    }
    if (!allowed) return D('client_cert_subject_not_allowed');
    const subject = subjectOf(cert, subjectFrom);
    return Object.freeze({
      subject,
      claims: Object.freeze({
        sub: subject, cn: cert.cn, san_dns: cert.dns, san_uri: cert.uris, fingerprint: cert.fingerprint,
        serial: cert.serial, issuer: cert.issuer, roles: Object.freeze([...roles]), scopes: Object.freeze([...scopes]),
      }),
      credential: Object.freeze({ id: `client_cert:${name}:${cert.fingerprint}`, rate: null }),
    });
  }

  function authenticate(ctx: RequestContext): Verdict {
    if (subjectHeader !== null) delete ctx.upstreamHeaders[subjectHeader];
    const cert = ctx.clientCert;
    if (cert === null) return D('client_cert_required');
    if (cert.problem !== null) {
      if (cert.error !== null) log.debug({ request_id: ctx.id, provider: name, code: cert.error, subject: cert.subject, issuer: cert.issuer }, 'client certificate not verified');
      return D(cert.problem);
    }
    if (Date.now() >= cert.validTo) return D('client_cert_expired');
    let decided = cert.memo.get(memoKey) as Identity | Deny | undefined;
    if (decided === undefined) {
      decided = decide(cert);
      cert.memo.set(memoKey, decided);
    }
    if ('reason' in decided) return decided;
    ctx.subject = decided.subject;
    ctx.claims = decided.claims;
    ctx.credential = decided.credential;
    if (subjectHeader !== null) ctx.upstreamHeaders[subjectHeader] = decided.subject;
    return undefined;
  }

  return {
    name,
    filterName: 'client_cert',
    authenticate,
    grants: grantsReader('roles', 'scopes'),
    carries: { roles: true, scopes: true },
    ownedHeaders: subjectHeader !== null ? [subjectHeader] : [],
    forbidden: forbiddenDenies(),
    describe: () => ({
      provider: name,
      type: 'client_cert',
      allow: cfg.allow.map((r) => ({ ...r })),
      subject_from: subjectFrom,
      subject_header: cfg.subject_header ?? null,
    }),
  };
}
