// A small PKI made with `openssl ca` for client-certificate tests: a CA with its database (so it can
// issue certificates with chosen validity dates, revoke them and publish a CRL), a server certificate
// for localhost/127.0.0.1 and client certificates with chosen subject CN and SANs.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './gateway.ts';

export interface IssuedCert {
  cert: string;
  key: string;
  /** PEM contents, for Node clients. */
  certPem: Buffer;
  keyPem: Buffer;
}

export interface ClientCertSpec {
  cn: string;
  dns?: string[];
  uris?: string[];
  /** `openssl ca` dates (YYYYMMDDHHMMSSZ); default: from an hour ago, for `days`. */
  startdate?: string;
  enddate?: string;
  days?: number;
}

export interface TestPki {
  dir: string;
  name: string;
  ca: string;
  caPem: Buffer;
  crl: string;
  server: IssuedCert;
  issueClient(file: string, spec: ClientCertSpec): IssuedCert;
  /** Revokes a certificate this CA issued and writes a fresh CRL to `crl`. */
  revoke(cert: string): void;
  /** Writes a fresh CRL (the revocations so far) to `crl`. */
  writeCrl(): void;
}

/** `openssl ca` date of `ms` (UTC). */
export function caDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function makePki(name = 'Portcullis Test CA', dir = tempDir('portcullis-pki-')): TestPki {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  writeFileSync(join(dir, 'ca.cnf'), `[ca]
default_ca = test_ca
[test_ca]
dir = ${dir}
database = ${dir}/index.txt
serial = ${dir}/serial
crlnumber = ${dir}/crlnumber
new_certs_dir = ${dir}
certificate = ${dir}/ca.crt
private_key = ${dir}/ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
`);
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', 'ca.key', '-out', 'ca.crt']);

  const issue = (file: string, cn: string, ext: string, dates: string[]): IssuedCert => {
    run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${file}.key`, '-out', `${file}.csr`]);
    writeFileSync(join(dir, `${file}.ext`), ext);
    run(['ca', '-batch', '-notext', '-config', 'ca.cnf', '-in', `${file}.csr`, '-out', `${file}.crt`, '-extfile', `${file}.ext`, ...dates]);
    const cert = join(dir, `${file}.crt`);
    const key = join(dir, `${file}.key`);
    return { cert, key, certPem: readFileSync(cert), keyPem: readFileSync(key) };
  };
  const crl = join(dir, 'crl.pem');
  const writeCrl = () => run(['ca', '-config', 'ca.cnf', '-gencrl', '-out', crl]);
  writeCrl();
  const hourAgo = caDate(Date.now() - 3_600_000);
  const server = issue('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n', ['-startdate', hourAgo, '-days', '2']);
  return {
    dir,
    name,
    ca: join(dir, 'ca.crt'),
    caPem: readFileSync(join(dir, 'ca.crt')),
    crl,
    server,
    issueClient(file, spec) {
      const sans = [...(spec.dns ?? []).map((d) => `DNS:${d}`), ...(spec.uris ?? []).map((u) => `URI:${u}`)];
      const ext = `${sans.length ? `subjectAltName=${sans.join(',')}\n` : ''}extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n`;
      const dates = ['-startdate', spec.startdate ?? hourAgo];
      if (spec.enddate !== undefined) dates.push('-enddate', spec.enddate);
      else dates.push('-days', String(spec.days ?? 2));
      return issue(file, spec.cn, ext, dates);
    },
    revoke(cert) {
      run(['ca', '-config', 'ca.cnf', '-revoke', cert]);
      writeCrl();
    },
    writeCrl,
  };
}
