// The client_cert provider's decisions on stated certificates (the listener's verdict and names), and the
// SAN and X-Forwarded-Client-Cert text handling: the e2e file (test/e2e/mtls.test.ts) covers real TLS.
import { describe, expect, it } from 'vitest';
import { createClientCertProvider, type ClientCertProviderConfig } from '../../src/filters/client-cert.ts';
import type { CompileEnv } from '../../src/contract/filter.ts';
import { forwardedClientCert, parseSubjectAltName, statedClientCertificate } from '../../src/proxy/client-cert.ts';
import { RequestContext } from '../../src/contract/context.ts';

const env = { telemetry: { log: { debug() {} } } } as unknown as CompileEnv;
const provider = createClientCertProvider('mesh', {
  allow: [
    { san_uri: 'spiffe://example.org/ns/*/sa/api', roles: ['api'], scopes: [] },
    { san_uri: 'spiffe://example.org/ns/ops/**', roles: ['ops'], scopes: ['deploy'] },
    { san_dns: '*.partners.example.com', roles: ['partner'], scopes: [] },
    { cn: 'console', san_dns: 'console.internal', roles: ['admin'], scopes: [] },
  ],
  subject_from: ['san_uri', 'san_dns', 'cn'],
} as ClientCertProviderConfig, [], env);

function decide(cert: ReturnType<typeof statedClientCertificate> | null): { reason: string } | { subject: string | null; roles: unknown } {
  const ctx = new RequestContext('GET', '1.1', {}, '127.0.0.1', 'https', 0);
  ctx.clientCert = cert;
  const d = provider.authenticate(ctx) as { reason: string } | undefined;
  return d !== undefined ? { reason: d.reason } : { subject: ctx.subject, roles: ctx.claims!.roles };
}

describe('client_cert provider', () => {
  it('maps the listener verdict to its reason; no certificate is client_cert_required', () => {
    expect(decide(null)).toEqual({ reason: 'client_cert_required' });
    for (const p of ['client_cert_required', 'client_cert_untrusted', 'client_cert_expired', 'client_cert_revoked'] as const) {
      expect(decide(statedClientCertificate({ uris: ['spiffe://example.org/ns/x/sa/api'] }, p))).toEqual({ reason: p });
    }
  });

  it('* stays within a segment or label, ** crosses them; roles of every matching rule', () => {
    expect(decide(statedClientCertificate({ uris: ['spiffe://example.org/ns/billing/sa/api'] }))).toEqual({ subject: 'spiffe://example.org/ns/billing/sa/api', roles: ['api'] });
    expect(decide(statedClientCertificate({ uris: ['spiffe://example.org/ns/a/b/sa/api'] }))).toEqual({ reason: 'client_cert_subject_not_allowed' });
    expect(decide(statedClientCertificate({ uris: ['spiffe://example.org/ns/ops/sa/api'] }))).toEqual({ subject: 'spiffe://example.org/ns/ops/sa/api', roles: ['api', 'ops'] });
    expect(decide(statedClientCertificate({ dns: ['Reports.Partners.Example.com'] }))).toMatchObject({ roles: ['partner'] });
    expect(decide(statedClientCertificate({ dns: ['a.b.partners.example.com'] }))).toEqual({ reason: 'client_cert_subject_not_allowed' });
    expect(decide(statedClientCertificate({ dns: ['partners.example.com.evil'] }))).toEqual({ reason: 'client_cert_subject_not_allowed' });
    expect(decide(statedClientCertificate({ uris: ['spiffe://example.org.evil/ns/x/sa/api'] }))).toEqual({ reason: 'client_cert_subject_not_allowed' });
  });

  it('a rule with several names needs all of them', () => {
    expect(decide(statedClientCertificate({ cn: 'console' }))).toEqual({ reason: 'client_cert_subject_not_allowed' });
    expect(decide(statedClientCertificate({ cn: 'console', dns: ['console.internal'] }))).toEqual({ subject: 'console.internal', roles: ['admin'] });
  });

  it('an expired certificate on a live connection is refused per request', () => {
    const cert = { ...statedClientCertificate({ uris: ['spiffe://example.org/ns/x/sa/api'] }), validTo: Date.now() - 1 };
    expect(decide(cert)).toEqual({ reason: 'client_cert_expired' });
  });
});

describe('certificate text', () => {
  it('SAN values Node writes as JSON strings (a crafted ", URI:" inside one) stay one value', () => {
    expect(parseSubjectAltName('DNS:a.example.com, URI:spiffe://td/ns/x/sa/y, IP Address:127.0.0.1')).toEqual({ dns: ['a.example.com'], uris: ['spiffe://td/ns/x/sa/y'] });
    expect(parseSubjectAltName('DNS:"evil.com, URI:spiffe://td/ns/admin/sa/root", DNS:b')).toEqual({ dns: ['evil.com, URI:spiffe://td/ns/admin/sa/root', 'b'], uris: [] });
  });

  it('X-Forwarded-Client-Cert quotes values with separators', () => {
    expect(forwardedClientCert('ab', 'CN=x\\,y,O=Z', ['spiffe://td/a'], ['h;x'])).toBe('Hash=ab;Subject="CN=x\\\\,y,O=Z";URI=spiffe://td/a;DNS="h;x"');
  });
});
