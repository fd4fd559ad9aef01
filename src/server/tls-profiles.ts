// TLS settings of a listener: Mozilla's server-side profiles, with documented overrides. The cipher
// lists are written out (not OpenSSL keywords such as HIGH) so what is offered does not change with the
// OpenSSL build Node links: TLS 1.2 gets ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only (no
// CBC, so no LUCKY13; no ARIA, CCM, static RSA or DHE), TLS 1.3 its three AEAD suites.
import type { SecureContextOptions } from 'node:tls';

export type TlsProfile = 'intermediate' | 'modern';

const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
const TLS12_INTERMEDIATE = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
];

export const TLS_PROFILES: Record<TlsProfile, { minVersion: 'TLSv1.2' | 'TLSv1.3'; ciphers: string }> = {
  // Mozilla "intermediate" (v5.7) without its DHE suites: every client of the last decade.
  intermediate: { minVersion: 'TLSv1.2', ciphers: [...TLS13_SUITES, ...TLS12_INTERMEDIATE].join(':') },
  // Mozilla "modern": TLS 1.3 only.
  modern: { minVersion: 'TLSv1.3', ciphers: TLS13_SUITES.join(':') },
};

/** Key-exchange groups, in order of preference (Mozilla's list). */
export const TLS_GROUPS = 'X25519:prime256v1:secp384r1';

export interface ListenerTlsSettings {
  profile: TlsProfile;
  min_version?: 'TLSv1.2' | 'TLSv1.3' | undefined;
  ciphers?: string | undefined;
}

/**
 * The options every secure context of the listener is made with (at start and on each certificate
 * reload: `setSecureContext` replaces the whole context, so a reload without them would fall back to
 * Node's defaults).
 */
export function tlsContextOptions(tls: ListenerTlsSettings): SecureContextOptions {
  const profile = TLS_PROFILES[tls.profile];
  return {
    minVersion: tls.min_version ?? profile.minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: tls.ciphers ?? profile.ciphers,
    ecdhCurve: TLS_GROUPS,
    // The server's order: every suite listed is AEAD with forward secrecy, so the order only settles which
    // one, and a server order is what scanners (testssl.sh: "NOT a cipher order configured") and audits
    // expect. Mozilla leaves the choice to clients; with these lists the difference is speed, not safety.
    honorCipherOrder: true,
  };
}
