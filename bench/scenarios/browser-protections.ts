// CORS + security headers + CSRF (static token and Fetch Metadata) on one route: the browser-facing
// protections on the hot path. Bodyless POSTs from an allowed cross-site origin so every check runs
// (origin lookup, Sec-Fetch-Site, constant-time token compare, Access-Control-*, Vary, header policy).
import { passthroughPolicy } from '../policy.ts';
import type { Scenario } from './types.ts';

const TOKEN = '3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550fdab836ed';
const ORIGIN = 'https://app.example.com';

export const scenario: Scenario = {
  name: 'browser-protections',
  description: 'CORS (credentialed, allowed origin), security headers (default API policy), CSRF static token + Fetch Metadata on POST',
  policy: (ctx) =>
    passthroughPolicy(ctx.upstreamUrl, {
      top: `cors:
  web: { origins: ["\${env:FRONTEND_ORIGIN}", "https://*.example.org"], credentials: true, methods: [GET, POST], allow_headers: [Content-Type, X-CSRF-Token] }
headers:
  strict: { csp: { default-src: ["'none'"], connect-src: ["'self'", "${ORIGIN}"] }, permissions_policy: "camera=(), geolocation=()" }
csrf:
  api: { token: "\${env:CSRF_TOKEN}", trusted_origins: ["\${env:FRONTEND_ORIGIN}"] }`,
      route: `cors: web
headers: strict
csrf: api`,
    }),
  env: () => ({ FRONTEND_ORIGIN: ORIGIN, CSRF_TOKEN: TOKEN }),
  load: () => ({
    method: 'POST',
    headers: { origin: ORIGIN, 'sec-fetch-site': 'cross-site', 'x-csrf-token': TOKEN, 'content-length': '0' },
  }),
  target: { atLeast: 0.95, note: 'ratio to Portcullis passthrough in the same run' },
};
