// Client certificates end to end: a CA made with `openssl ca` (test/helpers/pki.ts) issues good, expired
// and revoked client certificates, another CA a "wrong" one; the real gateway has a `require` listener
// (refused at the handshake) and an `optional` one (refused per route by a client_cert provider, with a
// precise reason). Node (HTTP/1.1, HTTP/2) and curl (HTTP/1.1, HTTP/2) clients; the recording upstream
// shows X-Forwarded-Client-Cert only for verified certificates and never a client-sent copy.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { Agent, request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { caDate, makePki, type IssuedCert, type TestPki } from '../helpers/pki.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

let pki: TestPki;
let other: TestPki;
let upstream: RecordingUpstream;
let gw: RunningGateway;
let good: IssuedCert;
let reader: IssuedCert;
let expired: IssuedCert;
let revoked: IssuedCert;
let wrongCa: IssuedCert;
let wrongSan: IssuedCert;
let crlFile: string;

const SPIFFE_BILLING = 'spiffe://example.org/ns/billing/sa/api';

type Reply = { status: number; body: string; reused?: boolean } | { error: string };

interface ClientOptions {
  cert?: IssuedCert;
  headers?: Record<string, string>;
  agent?: Agent;
}

function nodeH1(url: string, path: string, o: ClientOptions = {}): Promise<Reply> {
  return new Promise((resolve) => {
    const req = httpsRequest(url + path, {
      ca: pki.caPem, servername: 'localhost', headers: o.headers, agent: o.agent ?? false,
      ...(o.cert ? { cert: o.cert.certPem, key: o.cert.keyPem } : {}),
    }, (res) => {
      let body = '';
      const reused = (res.socket as TLSSocket).isSessionReused();
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode!, body, reused }));
    });
    req.on('error', (err) => resolve({ error: err.message }));
    req.end();
  });
}

function nodeH2(url: string, path: string, o: ClientOptions = {}): Promise<Reply> {
  return new Promise((resolve) => {
    const session = h2connect(url, { ca: pki.caPem, servername: 'localhost', ...(o.cert ? { cert: o.cert.certPem, key: o.cert.keyPem } : {}) });
    session.on('error', (err) => resolve({ error: err.message }));
    const stream = session.request({ ':path': path, ...o.headers });
    let status = 0;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8').on('data', (d: string) => (body += d));
    // A refused handshake may end the stream before the session reports its error: no status is a refusal.
    stream.on('close', () => {
      session.close();
      resolve(status === 0 ? { error: 'stream closed without a response' } : { status, body });
    });
    stream.on('error', (err) => resolve({ error: err.message }));
  });
}

async function curl(url: string, path: string, o: ClientOptions & { http2?: boolean } = {}): Promise<Reply> {
  const args = ['-sS', '--cacert', pki.ca, '-o', '-', '-w', '\n%{http_code}', o.http2 ? '--http2' : '--http1.1'];
  if (o.cert) args.push('--cert', o.cert.cert, '--key', o.cert.key);
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  try {
    const { stdout } = await run('curl', [...args, url.replace('127.0.0.1', 'localhost') + path], { timeout: 10_000 });
    const nl = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl) };
  } catch (err) {
    return { error: String((err as { stderr?: string }).stderr ?? err) };
  }
}

/** The requests the upstream received for a unique path. */
const seen = (path: string) => upstream.received.filter((r) => r.url === path);
const unique = (prefix: string) => `${prefix}/${randomUUID().slice(0, 8)}`;
const reason = (r: Reply) => ('error' in r ? `error: ${r.error}` : `${r.status} ${(JSON.parse(r.body) as { reason?: string }).reason ?? ''}`.trim());

beforeAll(async () => {
  pki = makePki();
  other = makePki('Other CA');
  good = pki.issueClient('good', { cn: 'billing-api', uris: [SPIFFE_BILLING], dns: ['billing.internal'] });
  reader = pki.issueClient('reader', { cn: 'report-job', dns: ['reports.partners.example.com'] });
  expired = pki.issueClient('expired', { cn: 'old-job', uris: [SPIFFE_BILLING], startdate: caDate(Date.now() - 10 * 86_400_000), enddate: caDate(Date.now() - 86_400_000) });
  revoked = pki.issueClient('revoked', { cn: 'leaked-job', uris: [SPIFFE_BILLING] });
  wrongSan = pki.issueClient('wrongsan', { cn: 'intruder', uris: ['spiffe://evil.example/ns/billing/sa/api'], dns: ['billing.evil.example'] });
  wrongCa = other.issueClient('wrongca', { cn: 'billing-api', uris: [SPIFFE_BILLING] });
  pki.revoke(revoked.cert);
  // The gateway reads its own copy of the CRL, so a test can publish a new one by copying.
  crlFile = `${pki.dir}/gateway-crl.pem`;
  copyFileSync(pki.crl, crlFile);
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners:
  - name: strict
    address: 127.0.0.1:0
    tls: { cert: "${pki.server.cert}", key: "${pki.server.key}", client_ca: "${pki.ca}", crl: "${crlFile}", client_auth: require }
  - name: mixed
    address: 127.0.0.1:0
    tls: { cert: "${pki.server.cert}", key: "${pki.server.key}", client_ca: "${pki.ca}", crl: "${crlFile}", client_auth: optional }
admin: { address: 127.0.0.1:0 }
upstreams:
  app: { url: "${upstream.url}" }
auth:
  providers:
    mesh:
      client_cert:
        allow:
          - { san_uri: "spiffe://example.org/ns/billing/sa/*", roles: [billing] }
          - { san_dns: "*.partners.example.com", roles: [reports], scopes: ["reports:read"] }
        subject_header: X-Client-Subject
rate_limits:
  per_cert: { key: credential, limit: 3, window: 1h }
routes:
  - name: open
    match: { path_prefix: /open }
    upstream: app
    auth: none
  - name: billing
    match: { path_prefix: /billing }
    upstream: app
    auth: mesh
    authorize: { roles_any: [billing] }
  - name: reports
    match: { path_prefix: /reports }
    upstream: app
    auth: mesh
    authorize: { scopes_any: ["reports:read"] }
  - name: limited
    match: { path_prefix: /limited }
    upstream: app
    auth: mesh
    rate_limit: per_cert
`);
});

afterAll(async () => {
  expect(await gw?.stop()).toBe(0);
  await upstream?.close();
});

describe('require listener: refused at the handshake', () => {
  const refused: [string, () => IssuedCert | undefined][] = [
    ['no certificate', () => undefined],
    ['a certificate of another CA', () => wrongCa],
    ['an expired certificate', () => expired],
    ['a revoked certificate', () => revoked],
  ];
  for (const [what, cert] of refused) {
    it(`${what}: no HTTP exchange, nothing forwarded (node h1, node h2, curl)`, async () => {
      const path = unique('/open/strict');
      for (const r of [await nodeH1(gw.urls[0]!, path, { cert: cert() }), await nodeH2(gw.urls[0]!, path, { cert: cert() }), await curl(gw.urls[0]!, path, { cert: cert() })]) {
        expect('error' in r, JSON.stringify(r)).toBe(true);
      }
      expect(seen(path)).toHaveLength(0);
    });
  }

  it('a good certificate is let in over h1 and h2 (node and curl); the upstream gets its identity in X-Forwarded-Client-Cert', async () => {
    const path = unique('/open/strict');
    const replies = [
      await nodeH1(gw.urls[0]!, path, { cert: good }),
      await nodeH2(gw.urls[0]!, path, { cert: good }),
      await curl(gw.urls[0]!, path, { cert: good }),
      await curl(gw.urls[0]!, path, { cert: good, http2: true }),
    ];
    for (const r of replies) expect(reason(r)).toBe('200');
    const got = seen(path);
    expect(got).toHaveLength(4);
    for (const r of got) {
      const xfcc = r.headers['x-forwarded-client-cert'] as string;
      expect(xfcc).toMatch(/^Hash=[0-9a-f]{64};Subject="CN=billing-api";URI=spiffe:\/\/example\.org\/ns\/billing\/sa\/api;DNS=billing\.internal$/);
    }
  });

  it('a client-sent X-Forwarded-Client-Cert never reaches the upstream: replaced by the verified one', async () => {
    const path = unique('/open/strict');
    const forged = 'Hash=00;Subject="CN=admin";URI=spiffe://example.org/ns/admin/sa/root';
    expect(reason(await nodeH1(gw.urls[0]!, path, { cert: good, headers: { 'x-forwarded-client-cert': forged } }))).toBe('200');
    expect(reason(await nodeH2(gw.urls[0]!, path, { cert: good, headers: { 'x-forwarded-client-cert': forged } }))).toBe('200');
    const got = seen(path);
    expect(got).toHaveLength(2);
    for (const r of got) {
      expect(r.headers['x-forwarded-client-cert']).toContain('CN=billing-api');
      expect(JSON.stringify(r.rawHeaders)).not.toContain('CN=admin');
    }
  });

  it('a resumed TLS session still carries the verified certificate (Node resumes from its session cache)', async () => {
    const path = unique('/open/strict');
    const agent = new Agent({ keepAlive: false, maxCachedSessions: 10 });
    const first = await nodeH1(gw.urls[0]!, path, { cert: good, agent });
    expect(reason(first)).toBe('200');
    // The TLS 1.3 ticket arrives after the handshake; the next connection resumes with it.
    const second = await nodeH1(gw.urls[0]!, path, { cert: good, agent });
    expect(reason(second)).toBe('200');
    expect(second).toMatchObject({ reused: true });
    const got = seen(path);
    expect(got).toHaveLength(2);
    expect(got[1]!.headers['x-forwarded-client-cert']).toBe(got[0]!.headers['x-forwarded-client-cert']);
    agent.destroy();
  });
});

describe('optional listener without a client_cert provider', () => {
  it('requests without a certificate or with an untrusted one are served, and the upstream gets no identity header', async () => {
    const path = unique('/open/mixed');
    const forged = { 'x-forwarded-client-cert': 'Hash=00;Subject="CN=admin"' };
    for (const cert of [undefined, wrongCa, expired, revoked]) {
      expect(reason(await nodeH1(gw.urls[1]!, path, { cert, headers: forged }))).toBe('200');
    }
    expect(reason(await curl(gw.urls[1]!, path, { headers: forged, http2: true }))).toBe('200');
    const got = seen(path);
    expect(got).toHaveLength(5);
    for (const r of got) expect(r.headers['x-forwarded-client-cert']).toBeUndefined();
    expect(reason(await nodeH2(gw.urls[1]!, path, { cert: good }))).toBe('200');
    expect(seen(path)[5]!.headers['x-forwarded-client-cert']).toContain('URI=spiffe://example.org/ns/billing/sa/api');
  });
});

describe('optional listener, routes with a client_cert provider', () => {
  const cases: [string, () => IssuedCert | undefined, string][] = [
    ['no certificate', () => undefined, '403 client_cert_required'],
    ['a certificate of another CA', () => wrongCa, '403 client_cert_untrusted'],
    ['an expired certificate', () => expired, '403 client_cert_expired'],
    ['a revoked certificate', () => revoked, '403 client_cert_revoked'],
    ['a certificate whose SANs no rule allows', () => wrongSan, '403 client_cert_subject_not_allowed'],
  ];
  for (const [what, cert, expected] of cases) {
    it(`${what}: ${expected} (node h1, node h2, curl h1 and h2), nothing forwarded`, async () => {
      const path = unique('/billing');
      const url = gw.urls[1]!;
      const replies = [
        await nodeH1(url, path, { cert: cert() }),
        await nodeH2(url, path, { cert: cert() }),
        await curl(url, path, { cert: cert() }),
        await curl(url, path, { cert: cert(), http2: true }),
      ];
      for (const r of replies) expect(reason(r)).toBe(expected);
      expect(seen(path)).toHaveLength(0);
    });
  }

  it('a good certificate: subject from its SPIFFE ID, roles for authorize, identity headers set by the gateway only', async () => {
    const path = unique('/billing');
    const url = gw.urls[1]!;
    const forged = { 'x-client-subject': 'spiffe://example.org/ns/admin/sa/root', 'x-forwarded-client-cert': 'Hash=00;Subject="CN=admin"' };
    for (const r of [await nodeH1(url, path, { cert: good, headers: forged }), await nodeH2(url, path, { cert: good, headers: forged }), await curl(url, path, { cert: good, http2: true, headers: forged })]) {
      expect(reason(r)).toBe('200');
    }
    const got = seen(path);
    expect(got).toHaveLength(3);
    for (const r of got) {
      expect(r.headers['x-client-subject']).toBe(SPIFFE_BILLING);
      expect(r.headers['x-forwarded-client-cert']).toMatch(/^Hash=[0-9a-f]{64};Subject="CN=billing-api";URI=spiffe:/);
      expect(JSON.stringify(r.rawHeaders)).not.toContain('admin');
    }
  });

  it('roles and scopes come from the matching rule: a reports certificate is refused on billing (role_missing), let in on reports', async () => {
    const billing = unique('/billing');
    const reports = unique('/reports');
    expect(reason(await nodeH2(gw.urls[1]!, billing, { cert: reader }))).toBe('403 role_missing');
    expect(reason(await nodeH1(gw.urls[1]!, reports, { cert: reader }))).toBe('200');
    expect(reason(await nodeH1(gw.urls[1]!, reports, { cert: good }))).toBe('403 scope_missing');
    expect(seen(billing)).toHaveLength(0);
    expect(seen(reports)).toHaveLength(1);
    expect(seen(reports)[0]!.headers['x-client-subject']).toBe('reports.partners.example.com');
  });

  it('rate limits keyed on credential count each certificate on its own', async () => {
    const path = unique('/limited');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await nodeH1(gw.urls[1]!, path, { cert: reader }) as { status: number }).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(reason(await nodeH1(gw.urls[1]!, path, { cert: good }))).toBe('200');
  });

  it('a certificate revoked while its connection is open: the new CRL closes the connection and the reconnect is refused (client_cert_revoked)', async () => {
    const soon = pki.issueClient('soon-revoked', { cn: 'soon-revoked', uris: ['spiffe://example.org/ns/billing/sa/batch'] });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const path = unique('/billing');
    expect(reason(await nodeH1(gw.urls[1]!, path, { cert: soon, agent }))).toBe('200');
    pki.revoke(soon.cert);
    copyFileSync(pki.crl, crlFile);
    const refused = await waitFor(async () => {
      const r = await nodeH1(gw.urls[1]!, path, { cert: soon, agent });
      return 'status' in r && r.status === 403 ? r : null;
    }, 10_000);
    expect(reason(refused)).toBe('403 client_cert_revoked');
    // Other certificates go on working under the new list.
    expect(reason(await nodeH2(gw.urls[1]!, path, { cert: good }))).toBe('200');
    expect(gw.stderr() + gw.stdout()).toContain('revocation list reloaded');
    agent.destroy();
  });
});
