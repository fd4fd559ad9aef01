// The one per-request object. Every field is assigned in the constructor (null included) so all contexts
// share one hidden class; filters write declared fields and never add properties.
import type { IncomingHttpHeaders } from 'node:http';
import type { ClientCertificate } from './client-cert.ts';
import type { Rate } from './rate-limit.ts';

/**
 * What a request knows of the route that took it: the compiled route (policy/compile.ts) is one, and this
 * is the part the layers below the policy compiler read (telemetry names, the response hooks to run).
 */
export interface RouteInfo {
  readonly name: string;
  readonly upstream: { readonly name: string } | null;
  /** Response hooks in chain order, or null when the route has none. */
  readonly response: readonly ((ctx: RequestContext, head: ResponseHead) => void)[] | null;
}

/** Headers as sent on: lower-case names, repeated headers as arrays. */
export type HeaderMap = Record<string, string | string[] | undefined>;

export interface ResponseHead {
  status: number;
  headers: HeaderMap;
}

/**
 * Inspects a request body while it streams to the upstream (multipart part checks). Throwing a
 * `BodyRejectedError` aborts the upstream request and answers the client with its status and reason.
 */
export type BodyFilter = (ctx: RequestContext, body: AsyncIterable<Buffer>) => AsyncIterable<Buffer>;

/** Thrown by a BodyFilter: the request body broke a rule; the client gets `status` with `reason`. */
export class BodyRejectedError extends Error {
  readonly code = 'REQUEST_BODY_REJECTED';
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string) {
    super(`request body rejected: ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

/** The first bytes of a request body, read before forwarding (see BodyReader). */
export interface BodyPrefix {
  /** The whole body when `complete`, else its first bytes (at most the cap asked for). */
  readonly bytes: Buffer;
  /** True when nothing follows `bytes`: the body fit in the cap and arrived whole. */
  readonly complete: boolean;
}

/**
 * The request body of a route whose filters read its first bytes (rate-limit keys from body fields).
 * `prefix` reads once (later calls share the first read); the forwarder then sends those bytes and the
 * rest unchanged. Set by the gateway before the chain on such routes when the request has a body.
 */
export interface BodyReader {
  prefix(max: number): Promise<BodyPrefix>;
  /** The prefix once read, else null. */
  readonly current: BodyPrefix | null;
  /** Reading began (and `Expect: 100-continue` was answered). */
  readonly started: boolean;
  /** The body for the upstream, read-ahead bytes first. */
  stream(): AsyncIterable<Buffer>;
}

export interface DenyRecord {
  filter: string;
  reason: string;
}

/**
 * Records a deny that a filter in report mode (`mode: report`) did not give: the request goes on, and the
 * end-of-request telemetry counts it (`portcullis_reported_denies_total`) and logs it (`reported`).
 */
export function reportDeny(ctx: RequestContext, filter: string, reason: string): void {
  (ctx.reported ??= []).push({ filter, reason });
}

/** The machine credential a request was authenticated with (API key, client certificate): never the secret. */
export interface Credential {
  /** Stable id for rate-limit keys and logs: `api_key:PROVIDER:KEY_ID`, `client_cert:PROVIDER:SHA256`. */
  readonly id: string;
  /** The credential's own rate (an API key's `rate_limit`), used by limits keyed on `credential`. */
  readonly rate: Rate | null;
}

export class RequestContext {
  /** Request id (client's valid X-Request-ID or a generated one). */
  id: string;
  readonly startTime: number;
  readonly method: string;
  /** Normalized path: the one routed and forwarded. */
  path: string;
  /** Query string with its `?`, or ''. */
  query: string;
  /** Path sent upstream when a rewrite changed it (`path` stays what the client asked for), else null. */
  upstreamPath: string | null;
  /** Host as addressed by the client, lower-case, without port. */
  host: string;
  /** Host header value as sent (with port), forwarded to the upstream. */
  authority: string;
  /** Scheme the client used: from the listener, or from a trusted proxy's X-Forwarded-Proto. */
  scheme: 'http' | 'https';
  /** Immediate peer address. */
  readonly peerIp: string;
  /** Client address: the peer, or the right-most untrusted hop of a trusted proxy's X-Forwarded-For. */
  clientIp: string;
  /** True when the peer is in `trusted_proxies`. */
  peerTrusted: boolean;
  readonly httpVersion: string;
  readonly requestHeaders: IncomingHttpHeaders;
  /** Headers sent to the upstream; filters add or delete entries here. */
  upstreamHeaders: HeaderMap;
  /** Headers added to the client's response (allowed or denied) by request-phase filters. */
  responseHeaders: HeaderMap;
  route: RouteInfo | null;
  /** Status sent to the client, 0 until sent. */
  status: number;
  /** Upstream status, 0 when the upstream was not asked or did not answer. */
  upstreamStatus: number;
  /** Milliseconds the upstream took to answer with its headers, -1 when not asked. */
  upstreamDurationMs: number;
  /** Why the gateway answered itself (deny or failure), null when forwarded. */
  deny: DenyRecord | null;
  /** Denies of filters in report mode: what would have been refused, and was let through; else null. */
  reported: DenyRecord[] | null;
  /** Authenticated subject (JWT `sub`, forward-auth user), null when anonymous. */
  subject: string | null;
  /** Verified claims of the request's token, null when none. */
  claims: Readonly<Record<string, unknown>> | null;
  /** Machine credential (API key, client certificate) the subject was authenticated with, else null. */
  credential: Credential | null;
  /**
   * The connection's client certificate as the listener verified it (parsed once per connection), on a
   * listener with `tls.client_ca`; null elsewhere (and when `explain` has none to state).
   */
  clientCert: ClientCertificate | null;
  /** Audit action name when the route is audited, else null. */
  audit: string | null;
  /** Tracing span of the request when tracing is on (observability owns its type). */
  span: unknown;
  /** Set by a request filter to inspect the body as it streams (body limits), else null. */
  bodyFilter: BodyFilter | null;
  /** The body's reader on routes whose filters read its first bytes (and the request has one), else null. */
  body: BodyReader | null;
  /** Client headers removed before any filter ran (untrusted-header list, `_` names), by name; else null. */
  scrubbed: HeaderMap | null;
  /** NormalizedTarget.flags of the request target (path parameters, encoded percent). */
  targetFlags: number;

  constructor(
    method: string,
    httpVersion: string,
    requestHeaders: IncomingHttpHeaders,
    peerIp: string,
    scheme: 'http' | 'https',
    startTime: number,
  ) {
    this.id = '';
    this.startTime = startTime;
    this.method = method;
    this.path = '';
    this.query = '';
    this.upstreamPath = null;
    this.host = '';
    this.authority = '';
    this.scheme = scheme;
    this.peerIp = peerIp;
    this.clientIp = peerIp;
    this.peerTrusted = false;
    this.httpVersion = httpVersion;
    this.requestHeaders = requestHeaders;
    this.upstreamHeaders = {};
    this.responseHeaders = {};
    this.route = null;
    this.status = 0;
    this.upstreamStatus = 0;
    this.upstreamDurationMs = -1;
    this.deny = null;
    this.reported = null;
    this.subject = null;
    this.claims = null;
    this.credential = null;
    this.clientCert = null;
    this.audit = null;
    this.span = null;
    this.bodyFilter = null;
    this.body = null;
    this.scrubbed = null;
    this.targetFlags = 0;
  }
}
