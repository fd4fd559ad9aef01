// The filter registry: the only place filter names stand together. Order is chain order.
import { rateLimit } from './rate-limit.ts';
import { requestId } from './request-id.ts';
import { responseHeaders } from './response-headers.ts';
import type { FilterModule } from './types.ts';

export const filterModules: readonly FilterModule<any, any, any>[] = [
  requestId, // global, first: every answer, even a 404 or a parse failure, carries the id
  rateLimit, // after auth, authorize and csrf (keys may read verified claims; refused requests cost no quota), before body limits
  responseHeaders, // response phase only: edits the upstream's headers last
];
