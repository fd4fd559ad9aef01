// HS256-protected route, one hot token: after the first request every verification is a cache hit.
import { jwtPolicy, mint } from '../jwt-fixtures.ts';
import type { Scenario } from './types.ts';

export const scenario: Scenario = {
  name: 'jwt-hs256-hot',
  description: 'HS256 JWT + roles_any authorize, one token repeated (verified-token cache hit path)',
  policy: (ctx) => jwtPolicy(ctx, 'HS256'),
  load: async () => ({ headers: { authorization: `Bearer ${await mint('HS256', 'alice')}` } }),
  target: { atLeast: 0.9, note: 'hot-token throughput >= 0.9x Portcullis passthrough' },
};
