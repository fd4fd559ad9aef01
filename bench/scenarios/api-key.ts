// An API-key route (issue 18): the key in X-API-Key, hashed and looked up on every request, a scope
// checked by authorize, the subject forwarded. Built from the passthrough reference, so its ratio is the
// cost of the key check alone.
import { hashApiKey } from '../../src/filters/api-key.ts';
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

const KEY = 'pcak_bench-0123456789abcdef0123456789abcdef0123456789ab';

export const scenario: Scenario = {
  name: 'api-key',
  description: 'API key in X-API-Key (SHA-256 + map lookup per request) + scopes_all authorize + subject header',
  policy: (ctx) =>
    passthroughPolicy(ctx.upstreamUrl, {
      top: `auth:
  providers:
    keys:
      api_key:
        subject_header: X-Client
        keys:
          - { id: bench, sha256: ${hashApiKey(KEY)}, subject: bench-job, scopes: [bench:read] }`,
      route: 'auth: keys\nauthorize: { scopes_all: ["bench:read"] }',
    }),
  load: () => ({ headers: { 'x-api-key': KEY } }),
  target: { atLeast: 0.9, note: 'issue 18: an API-key route within 0.9x of passthrough' },
};
