// TLS profiles of a listener, judged by a real scanner: testssl.sh (Debian's package) scans the gateway's
// default (intermediate) listener and must report nothing above LOW except what belongs to the test's own
// self-made certificate (its chain of trust and its missing revocation URLs). Node clients then try what
// each profile must refuse: CBC and static-RSA suites, TLS 1.2 on `modern`, before and after a
// certificate reload (a reload replaces the whole secure context).
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, servedSerial, type TestCerts } from '../helpers/certs.ts';
import { runCli, startGateway, tempDir, waitFor, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let certs: TestCerts;
let upstream: RecordingUpstream;
let gw: RunningGateway;

beforeAll(async () => {
  certs = makeCerts('localhost', tempDir('portcullis-certs-'), 90);
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners:
  - name: intermediate
    address: 127.0.0.1:0
    tls: { cert: "${certs.cert}", key: "${certs.key}" }
  - name: modern
    address: 127.0.0.1:0
    tls: { cert: "${certs.cert}", key: "${certs.key}", profile: modern }
admin: { address: 127.0.0.1:0 }
# The scan also reads the HTTP answer's headers (HSTS...); a security-headers policy for every route is
# how the manual sets a gateway up (without one, the upstream's own headers pass unchanged).
headers: { default: {} }
upstreams:
  app: { url: "${upstream.url}" }
routes:
  - match: { path_prefix: / }
    upstream: app
`);
});

afterAll(async () => {
  expect(await gw?.stop()).toBe(0);
  await upstream?.close();
});

const portOf = (i: number) => Number(new URL(gw.urls[i]!).port);

/** The protocol and cipher a handshake settles on, or the error that ended it. */
function handshake(port: number, options: ConnectionOptions): Promise<{ protocol: string | null; cipher: string } | { error: string }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: certs.caPem, ...options }, () => {
      const result = { protocol: s.getProtocol(), cipher: s.getCipher().standardName };
      s.end();
      resolve(result);
    });
    s.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
  });
}

interface Finding { id: string; severity: string; finding: string }

function testssl(port: number, args: string[]): Promise<Finding[]> {
  const out = join(tempDir('portcullis-testssl-'), 'scan.json');
  return new Promise((resolve, reject) => {
    execFile('testssl', ['--quiet', '--color', '0', '--warnings', 'off', '--nodns', 'none', '--jsonfile', out, ...args, `127.0.0.1:${port}`],
      { timeout: 280_000, maxBuffer: 16 * 1024 * 1024 }, (err) => {
        try {
          resolve(JSON.parse(readFileSync(out, 'utf8')) as Finding[]);
        } catch {
          reject(err ?? new Error('testssl wrote no report'));
        }
      });
  });
}

// The test certificate is made by the test: no public chain, no OCSP or CRL URL. Those two findings are
// about it, not about the listener.
const OWN_CERTIFICATE = new Set(['cert_chain_of_trust', 'cert_revocation']);
const ABOVE_LOW = new Set(['MEDIUM', 'HIGH', 'CRITICAL']);

describe('TLS profiles', () => {
  it('intermediate (the default): testssl.sh finds nothing above LOW', { timeout: 300_000 }, async () => {
    const findings = await testssl(portOf(0), []);
    expect(findings.some((f) => f.id === 'cipherlist_STRONG' || f.id === 'cipherlist_AVERAGE' || f.id.startsWith('cipherlist_'))).toBe(true); // the scan ran
    const serious = findings.filter((f) => ABOVE_LOW.has(f.severity) && !OWN_CERTIFICATE.has(f.id));
    expect(serious.map((f) => `${f.severity} ${f.id}: ${f.finding}`)).toEqual([]);
    // The classes the outside scan named are gone, not merely below a threshold.
    const byId = new Map(findings.map((f) => [f.id, f]));
    expect(byId.get('cipherlist_AVERAGE')?.finding).toMatch(/not offered/);
    expect(byId.get('LUCKY13')?.severity).toBe('OK');
    expect(byId.get('TLS1_1')?.finding).toMatch(/not offered/);
    expect(byId.get('TLS1_3')?.finding).toMatch(/offered/);
  });

  it('modern: TLS 1.3 only (testssl.sh protocols)', { timeout: 300_000 }, async () => {
    const findings = await testssl(portOf(1), ['-p']);
    const byId = new Map(findings.map((f) => [f.id, f.finding]));
    expect(byId.get('TLS1_2')).toMatch(/not offered/);
    expect(byId.get('TLS1_3')).toMatch(/offered/);
    expect(byId.get('TLS1_3')).not.toMatch(/not offered/);
  });

  it('refuses CBC, static RSA and TLS 1.1; takes AEAD suites over TLS 1.2 and 1.3; keeps the profile across a certificate reload', async () => {
    const check = async () => {
      expect(await handshake(portOf(0), { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256' })).toHaveProperty('error');
      expect(await handshake(portOf(0), { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).toHaveProperty('error');
      expect(await handshake(portOf(0), { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' })).toEqual({ protocol: 'TLSv1.2', cipher: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256' });
      expect(await handshake(portOf(0), { maxVersion: 'TLSv1.2' })).toMatchObject({ protocol: 'TLSv1.2', cipher: expect.stringMatching(/_GCM_|CHACHA20/) });
      expect(await handshake(portOf(0), {})).toMatchObject({ protocol: 'TLSv1.3' });
      expect(await handshake(portOf(1), { maxVersion: 'TLSv1.2' })).toHaveProperty('error');
      expect(await handshake(portOf(1), {})).toMatchObject({ protocol: 'TLSv1.3' });
    };
    await check();
    const serial = () => servedSerial(portOf(0));
    const before = await serial();
    const next = makeCerts('localhost', tempDir('portcullis-certs-'), 90);
    copyFileSync(next.key, certs.key);
    copyFileSync(next.cert, certs.cert);
    certs = { ...certs, caPem: next.caPem };
    await waitFor(async () => (await serial()) !== before, 15_000);
    await check();
  });

  it('a cipher list OpenSSL cannot use is a policy error at its line', async () => {
    const file = writePolicy(`version: 1
listeners:
  - address: 127.0.0.1:0
    tls: { cert: "${certs.cert}", key: "${certs.key}", ciphers: "NOT-A-CIPHER" }
upstreams:
  app: { url: "http://127.0.0.1:1" }
routes:
  - match: { path_prefix: / }
    upstream: app
`);
    const r = await runCli(['validate', file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(new RegExp(`${file.replace(/[.]/g, '\\.')}:4:\\d+: .*OpenSSL accepts no cipher`));
  });
});
