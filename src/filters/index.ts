// The filter registry: the only place filter names stand together. Order is chain order.
import { bodyLimits } from './body-limits.ts';
import { cookies } from './cookies.ts';
import { cors } from './cors.ts';
import { csrf } from './csrf.ts';
import { requestId } from './request-id.ts';
import { responseHeaders } from './response-headers.ts';
import { securityHeaders } from './security-headers.ts';
import type { FilterModule } from './types.ts';

export const filterModules: readonly FilterModule<any, any, any>[] = [
  requestId, // global, first: every answer, even a 404 or a parse failure, carries the id
  cors, // before auth: preflights carry no credentials and are answered here; sets Access-Control-* on every answer
  csrf, // after auth: a forged request is refused before it costs a rate-limit hit or a body read
  bodyLimits, // last before forwarding: content types, then multipart parts checked while the body streams
  securityHeaders, // response phase: security headers on every answer of the route, the gateway's own included
  cookies, // response phase: Set-Cookie flags
  responseHeaders, // response phase only: edits the upstream's headers last
];
