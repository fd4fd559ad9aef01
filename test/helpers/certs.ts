// Real certificates made with openssl for each test run: a CA, and a server cert for localhost/127.0.0.1.
import { execFileSync } from 'node:child_process';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './gateway.ts';

export interface TestCerts {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  caPem: Buffer;
}

export function makeCerts(commonName = 'localhost', dir = tempDir('portcullis-certs-'), days = 2): TestCerts {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', String(days), '-subj', '/CN=Portcullis Test CA', '-keyout', 'ca.key', '-out', 'ca.crt']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${commonName}`, '-keyout', 'server.key', '-out', 'server.csr']);
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=DNS:${commonName},DNS:localhost,IP:127.0.0.1\n`);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', String(days), '-extfile', 'ext.cnf', '-out', 'server.crt']);
  return { dir, ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), caPem: readFileSync(join(dir, 'ca.crt')) };
}

/** Serial number of the certificate a TLS listener on `port` presents now (a reload changes it). */
export function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.on('error', reject);
  });
}
