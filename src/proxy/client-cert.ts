// The client certificate of a TLS connection, as the listener verified it: read once per connection (the
// first request on it parses, later requests and HTTP/2 streams reuse the result), with the verdict of the
// handshake (trusted, expired, revoked...), the names subject rules match on (CN, SAN DNS, SAN URI), and
// the X-Forwarded-Client-Cert value sent upstream for a verified certificate.
import type { TLSSocket } from 'node:tls';
import type { ClientCertificate, ClientCertProblem } from '../contract/client-cert.ts';

export const CLIENT_CERT_HEADER = 'x-forwarded-client-cert';

/** What a listener with client_ca marks each TLS connection with. */
export interface ClientCertSettings {
  readonly forward: boolean;
}

const SETTINGS = Symbol('portcullis.clientCertSettings');
const PARSED = Symbol('portcullis.clientCert');

type Marked = TLSSocket & { [SETTINGS]?: ClientCertSettings; [PARSED]?: ClientCertificate };

/** Called by the listener on each secure connection of a listener that asks for client certificates. */
export function markClientCertSocket(socket: TLSSocket, settings: ClientCertSettings): void {
  (socket as Marked)[SETTINGS] = settings;
}

/**
 * The connection's certificate, parsed on first use and cached on the socket; null when the listener asks
 * for none. `socket` may be Node's HTTP/2 proxy of the session socket: symbol properties and method calls
 * reach the real socket through it, so every stream of a session shares one parse.
 */
export function clientCertOf(socket: unknown): ClientCertificate | null {
  if (socket === null || socket === undefined) return null;
  const s = socket as Marked;
  const settings = s[SETTINGS];
  if (settings === undefined) return null;
  let parsed = s[PARSED];
  if (parsed === undefined) {
    parsed = readClientCertificate(s, settings);
    s[PARSED] = parsed;
  }
  return parsed;
}

function problemOf(error: string | null): ClientCertProblem {
  switch (error) {
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'client_cert_expired';
    case 'CERT_REVOKED':
      return 'client_cert_revoked';
    default:
      return 'client_cert_untrusted';
  }
}

const NONE: readonly string[] = Object.freeze([]);

function readClientCertificate(socket: TLSSocket, settings: ClientCertSettings): ClientCertificate {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) {
    return Object.freeze({
      problem: 'client_cert_required', error: null, cn: null, dns: NONE, uris: NONE, subject: '', issuer: '', serial: '',
      fingerprint: '', validTo: 0, xfcc: null, memo: new WeakMap(),
    });
  }
  const error = socket.authorized ? null : String(socket.authorizationError ?? 'UNKNOWN');
  const { dns, uris } = parseSubjectAltName(x509.subjectAltName);
  const subjectLines = x509.subject.split('\n');
  const cnLine = subjectLines.findLast((l) => l.startsWith('CN='));
  const subject = subjectLines.reverse().join(',');
  const fingerprint = x509.fingerprint256.replaceAll(':', '').toLowerCase();
  const problem = error === null ? null : problemOf(error);
  return Object.freeze({
    problem,
    error,
    cn: cnLine !== undefined ? cnLine.slice(3) : null,
    dns,
    uris,
    subject,
    issuer: x509.issuer.split('\n').reverse().join(','),
    serial: x509.serialNumber,
    fingerprint,
    validTo: Date.parse(x509.validTo),
    xfcc: settings.forward && problem === null ? forwardedClientCert(fingerprint, subject, uris, dns) : null,
    memo: new WeakMap(),
  });
}

/**
 * Envoy's X-Forwarded-Client-Cert element: `Hash=...;Subject="...";URI=...;DNS=...`. Values with `,`
 * `;` `=` or `"` are quoted, and `"` `\` inside quotes escaped, so the header parses one way.
 */
export function forwardedClientCert(fingerprint: string, subject: string, uris: readonly string[], dns: readonly string[]): string {
  let out = `Hash=${fingerprint};Subject=${quote(subject)}`;
  for (const u of uris) out += `;URI=${/[,;="\\]/.test(u) ? quote(u) : u}`;
  for (const d of dns) out += `;DNS=${/[,;="\\]/.test(d) ? quote(d) : d}`;
  return out;
}

function quote(v: string): string {
  return `"${v.replace(/["\\]/g, (c) => '\\' + c)}"`;
}

/**
 * SAN DNS names and URIs from Node's `subjectAltName` text (`DNS:a, URI:spiffe://...`). Node writes a
 * value holding `,` or quotes as a JSON string, so a crafted SAN cannot pass for two.
 */
export function parseSubjectAltName(text: string | undefined): { dns: readonly string[]; uris: readonly string[] } {
  if (text === undefined || text === '') return { dns: NONE, uris: NONE };
  const dns: string[] = [];
  const uris: string[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon === -1) break;
    const kind = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // JSON string: find its closing quote (skipping escapes).
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        break;
      }
      end = j + 1;
    } else {
      end = text.indexOf(', ', colon + 1);
      if (end === -1) end = text.length;
      value = text.slice(colon + 1, end);
    }
    if (kind === 'DNS') dns.push(value);
    else if (kind === 'URI') uris.push(value);
    i = text.startsWith(', ', end) ? end + 2 : end;
  }
  return { dns: Object.freeze(dns), uris: Object.freeze(uris) };
}

/** A certificate stated in `portcullis test` cases or built in tests: verified, with these names. */
export function statedClientCertificate(names: { cn?: string | undefined; dns?: readonly string[] | undefined; uris?: readonly string[] | undefined }, problem: ClientCertProblem | null = null): ClientCertificate {
  const subject = names.cn !== undefined ? `CN=${names.cn}` : '';
  const dns = Object.freeze([...(names.dns ?? [])]);
  const uris = Object.freeze([...(names.uris ?? [])]);
  const fingerprint = '0'.repeat(64);
  return Object.freeze({
    problem, error: null, cn: names.cn ?? null, dns, uris, subject, issuer: 'CN=stated in a test case', serial: '00',
    fingerprint, validTo: problem === 'client_cert_expired' ? 0 : Number.MAX_SAFE_INTEGER,
    xfcc: problem === null ? forwardedClientCert(fingerprint, subject, uris, dns) : null, memo: new WeakMap(),
  });
}
