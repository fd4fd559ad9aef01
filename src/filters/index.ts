// The filter registry: the only place filter names stand together. Order is chain order.
import { audit } from './audit.ts';
import { requestId } from './request-id.ts';
import { responseHeaders } from './response-headers.ts';
import type { FilterModule } from './types.ts';

export const filterModules: readonly FilterModule<any, any, any>[] = [
  requestId, // global, first: every answer, even a 404 or a parse failure, carries the id
  audit, // first route filter: marks the request before any filter can deny, so denied attempts are audited
  responseHeaders, // response phase only: edits the upstream's headers last
];
