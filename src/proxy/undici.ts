// undici, in two parts. The forwarding path needs only the connection pool and its connector, loaded
// here from their own modules: undici's index also loads fetch, WebSocket, EventSource, the HTTP cache
// and the mock agents, about 9 MiB of RSS in every gateway process that nothing on that path uses
// (docs/architecture.md). The rest of undici (its request API and fetch, with Agent) loads on first use,
// by the features that call other services: JWKS, forward auth, OpenID Connect, active health checks.
// Same module instances either way: the index requires these very files, so `Pool` here is undici's.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const requireModule = createRequire(import.meta.url);

export const Pool = requireModule('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export type Pool = Undici.Pool;
export const buildConnector = requireModule('undici/lib/core/connect.js') as typeof Undici.buildConnector;

let whole: typeof Undici | null = null;
/** All of undici, for `request`, `fetch` and `Agent`: loaded the first time a feature that calls out is compiled. */
export function undici(): typeof Undici {
  whole ??= requireModule('undici') as typeof Undici;
  return whole;
}
