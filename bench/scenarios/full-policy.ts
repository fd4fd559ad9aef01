// The "full policy" of issue 16: what a typical API route carries at once. HS256 hot token with an
// authorize rule and a claim header, a per-client limit in the real Redis that is never reached, CORS
// (credentialed, allowed origin), the default security headers, metrics, and the access log to a file.
import { join } from 'node:path';
import { SECRET, mint } from '../jwt-fixtures.ts';
import type { Scenario } from './types.ts';

const ORIGIN = 'https://app.example.com';

export function fullPolicy(upstreamUrl: string, redisUrl: string, dir: string): string {
  return `version: 1
listeners: [{ address: "\${LISTEN}" }]
admin: { address: "\${ADMIN}" }
log: { access: "${join(dir, 'access-full.log')}", audit: off, error: stderr, level: warn }
upstreams:
  app: { url: "${upstreamUrl}", max_connections: 64 }
auth:
  default: main
  providers:
    main:
      jwt:
        issuer: https://id.bench
        audience: bench
        algorithms: [HS256]
        keys:
          - { kid: k1, secret: "${SECRET}" }
        claims_to_headers: { sub: X-User-Id }
rate_limits:
  store: { redis: "${redisUrl}", key_prefix: "bench:full:${Date.now()}:", on_redis_failure: local }
  per_client: { key: client_ip, limit: 1000000000, window: 1s }
cors:
  web: { origins: ["${ORIGIN}"], credentials: true, methods: [GET, POST] }
headers:
  default: {}
routes:
  - name: bench
    match: { path_prefix: / }
    upstream: app
    authorize: { roles_any: [user] }
    rate_limit: per_client
    cors: web
`;
}

export const scenario: Scenario = {
  name: 'full-policy',
  description: 'HS256 hot token + authorize + claim header, Redis limit never hit, CORS, security headers, metrics, access log to a file',
  policy: (ctx) => fullPolicy(ctx.upstreamUrl, ctx.redisUrl, ctx.dir),
  env: () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' }),
  load: async () => ({ headers: { authorization: `Bearer ${await mint('HS256', 'alice')}`, origin: ORIGIN } }),
  target: { atLeast: 0.75, note: 'issue 16: full policy >= 0.75x passthrough' },
};
