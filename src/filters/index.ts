// The filter registry: the only place filter names stand together. Order is chain order.
import { audit } from './audit.ts';
import { auth } from './auth.ts';
import { authorize } from './authorize.ts';
import { bodyLimits } from './body-limits.ts';
import { cookies } from './cookies.ts';
import { cors } from './cors.ts';
import { csrf } from './csrf.ts';
import { ipRules } from './ip-rules.ts';
import { rateLimit } from './rate-limit.ts';
import { redirect } from './redirect.ts';
import { refusalLimit } from './refusal-limit.ts';
import { requestHeaders } from './request-headers.ts';
import { requestId } from './request-id.ts';
import { responseHeaders } from './response-headers.ts';
import { rewrite } from './rewrite.ts';
import { securityHeaders } from './security-headers.ts';
import type { FilterModule } from '../contract/filter.ts';

export const filterModules: readonly FilterModule<any, any, any>[] = [
  requestId, // global, first: every answer, even a 404 or a parse failure, carries the id
  audit, // first route filter: marks the request before any filter can deny, so denied attempts are audited
  ipRules, // first check: a refused address learns nothing more of the route, not even its redirect
  redirect, // before auth: a moved URL answers without credentials (it reveals only its policy target) and forwards nothing
  cors, // before auth: preflights carry no credentials and are answered here; sets Access-Control-* on every answer
  refusalLimit, // before auth: a client over its budget of refused requests is not verified any more (429); spends on identity refusals
  auth, // sets subject and claims, strips client copies of identity headers
  authorize, // right after auth: needs the verified claims; before csrf and rate limits so unauthorized requests cost nothing more
  csrf, // after auth: a forged request is refused before it costs a rate-limit hit or a body read
  rateLimit, // after auth, authorize and csrf (keys may read verified claims; refused requests cost no quota), before body limits
  bodyLimits, // last check before forwarding: content types, then multipart parts checked while the body streams
  rewrite, // after every check: auth, CSRF, rate-limit keys and logs all see the path the client asked for
  requestHeaders, // last edit of the upstream request, so it can remove what an earlier filter added
  securityHeaders, // response phase: security headers on every answer of the route, the gateway's own included
  cookies, // response phase: Set-Cookie flags
  responseHeaders, // response phase only: edits the upstream's headers last
];
