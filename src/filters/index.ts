// The filter registry: the only place filter names stand together. Order is chain order.
import { audit } from './audit.ts';
import { ipRules } from './ip-rules.ts';
import { redirect } from './redirect.ts';
import { requestHeaders } from './request-headers.ts';
import { auth } from './auth.ts';
import { authorize } from './authorize.ts';
import { requestId } from './request-id.ts';
import { responseHeaders } from './response-headers.ts';
import { rewrite } from './rewrite.ts';
import type { FilterModule } from './types.ts';

export const filterModules: readonly FilterModule<any, any, any>[] = [
  requestId, // global, first: every answer, even a 404 or a parse failure, carries the id
  audit, // first route filter: marks the request before any filter can deny, so denied attempts are audited
  ipRules, // first check: a refused address learns nothing more of the route, not even its redirect
  redirect, // before auth: a moved URL answers without credentials (it reveals only its policy target) and forwards nothing
  auth, // after request id (and client ip, cors preflight): sets subject and claims, strips client copies of identity headers
  authorize, // right after auth: needs the verified claims; before csrf and rate limits so unauthorized requests cost nothing more
  rewrite, // after every check: auth, CSRF, rate-limit keys and logs all see the path the client asked for
  requestHeaders, // last edit of the upstream request, so it can remove what an earlier filter added
  responseHeaders, // response phase only: edits the upstream's headers last
];
