// HS256-protected route with 10,000 distinct tokens in rotation: the first pass verifies every token, later
// passes hit the cache (default cache_size 20,000 holds them all). Reported, no target.
import type { Options } from 'autocannon';
import { jwtPolicy, mint } from '../jwt-fixtures.ts';
import type { Scenario } from './types.ts';

const DISTINCT = 10_000;

export const scenario: Scenario = {
  name: 'jwt-distinct-tokens',
  description: `HS256 JWT, ${DISTINCT.toLocaleString('en')} distinct tokens in rotation (verification + cache fill)`,
  policy: (ctx) => jwtPolicy(ctx, 'HS256'),
  async load(): Promise<Partial<Options>> {
    const tokens = await Promise.all(Array.from({ length: DISTINCT }, (_, i) => mint('HS256', `user-${i}`)));
    let next = 0;
    return {
      requests: [
        {
          setupRequest: (req) => {
            const token = tokens[next++ % DISTINCT]!;
            return { ...req, headers: { ...(req.headers ?? {}), authorization: `Bearer ${token}` } };
          },
        },
      ],
    };
  },
  target: { note: 'reported: distinct-token throughput' },
};
