// The filter registry: the only place filter names stand together. Order is chain order.
import { auth } from './auth.ts';
import { authorize } from './authorize.ts';
import { requestId } from './request-id.ts';
import { responseHeaders } from './response-headers.ts';
import type { FilterModule } from './types.ts';

export const filterModules: readonly FilterModule<any, any, any>[] = [
  requestId, // global, first: every answer, even a 404 or a parse failure, carries the id
  auth, // after request id (and client ip, cors preflight): sets subject and claims, strips client copies of identity headers
  authorize, // right after auth: needs the verified claims; before csrf and rate limits so unauthorized requests cost nothing more
  responseHeaders, // response phase only: edits the upstream's headers last
];
