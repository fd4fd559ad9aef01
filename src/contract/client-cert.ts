// A TLS connection's client certificate as the listener verified it (proxy/client-cert.ts reads it once
// per connection); the client_cert provider and the forwarded identity header work from this.

/** Why a connection's certificate is not accepted (deny reasons of the client_cert provider). */
export type ClientCertProblem = 'client_cert_required' | 'client_cert_untrusted' | 'client_cert_expired' | 'client_cert_revoked';

export interface ClientCertificate {
  /** The handshake's verdict: null when the chain verified against client_ca (and the CRL). */
  readonly problem: ClientCertProblem | null;
  /** OpenSSL's verification code when not verified (for logs), else null. */
  readonly error: string | null;
  readonly cn: string | null;
  readonly dns: readonly string[];
  readonly uris: readonly string[];
  /** Subject DN, RFC 4514 order (most specific first): `CN=svc,O=Example`. */
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  /** SHA-256 of the DER certificate, lower-case hex. */
  readonly fingerprint: string;
  /** End of validity, epoch ms (a certificate may expire while its connection or session lives on). */
  readonly validTo: number;
  /** X-Forwarded-Client-Cert value when the listener forwards it and the certificate verified, else null. */
  readonly xfcc: string | null;
  /** Per-provider results for this certificate (subject rules are decided once per connection). */
  readonly memo: WeakMap<object, unknown>;
}
