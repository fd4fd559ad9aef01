// Mutual TLS: a `require` listener with client_ca and a CRL, a client_cert provider with a SPIFFE rule, and
// X-Forwarded-Client-Cert to the upstream. autocannon presents the client certificate through its
// tlsOptions; it keeps its connections open, so handshakes happen once per connection and the measure is
// the per-request cost (TLS records, the certificate read once per connection, the cached rule decision,
// the header). The paired reference is plain-HTTP passthrough, so the ratio includes TLS itself.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki } from '../../test/helpers/pki.ts';
import { passthroughPolicy } from '../policy.ts';
import type { BenchContext, Scenario } from './types.ts';

const pkiDir = (ctx: BenchContext) => join(ctx.dir, 'mtls-pki');

export const scenario: Scenario = {
  name: 'mtls-passthrough',
  description: 'TLS listener requiring client certificates (client_ca + CRL), client_cert provider with a SPIFFE rule, X-Forwarded-Client-Cert; HTTP/1.1 keep-alive (driven by autocannon: wrk cannot present a client certificate)',
  scheme: 'https',
  tool: 'autocannon', // wrk cannot present a client certificate
  async setup(ctx) {
    mkdirSync(pkiDir(ctx), { recursive: true });
    const pki = makePki('Bench CA', pkiDir(ctx));
    pki.issueClient('bench-client', { cn: 'bench', uris: ['spiffe://bench.example/ns/load/sa/autocannon'] });
    return async () => {};
  },
  policy: (ctx) => {
    const d = pkiDir(ctx);
    return passthroughPolicy(ctx.upstreamUrl, {
      top: `auth:
  providers:
    mesh:
      client_cert:
        allow: [{ san_uri: "spiffe://bench.example/ns/*/sa/*", roles: [load] }]`,
      route: 'auth: mesh\nauthorize: { roles_any: [load] }',
    }).replace('listeners: [{ address: "${LISTEN}" }]',
      `listeners: [{ address: "\${LISTEN}", tls: { cert: "${d}/server.crt", key: "${d}/server.key", client_ca: "${d}/ca.crt", crl: "${d}/crl.pem", client_auth: require } }]`);
  },
  load: (ctx) => ({
    tlsOptions: { cert: readFileSync(join(pkiDir(ctx), 'bench-client.crt')), key: readFileSync(join(pkiDir(ctx), 'bench-client.key')) },
  }),
  target: { atLeast: 0.6, note: 'mTLS (TLS included) >= 0.6x plain-HTTP passthrough' },
};
