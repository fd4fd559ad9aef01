// Header rules of a proxy: hop-by-hop headers never cross, X-Forwarded-* are the gateway's to set, and a
// client's claims about its own address count only when it is a trusted proxy.
import type { IncomingHttpHeaders } from 'node:http';
import type { CidrSet } from '../config/cidr.ts';
import { canonicalAddress } from '../config/cidr.ts';
import type { HeaderMap, RequestContext } from '../contract/context.ts';
import { CLIENT_CERT_HEADER } from './client-cert.ts';

/** RFC 9110 7.6.1 connection-specific fields, plus those HTTP/2 forbids and proxies must not pass. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authenticate', 'proxy-authorization', 'http2-settings',
]);

/** Client-sent headers that only the gateway may set (or a trusted proxy before it). */
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip']);

/** Names listed in `Connection: a, b` are hop-by-hop for this message too. */
function connectionListed(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text === 'keep-alive' || text === 'close' || text === 'Keep-Alive') return null;
  const out = new Set<string>();
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (name) out.add(name);
  }
  return out;
}

/**
 * The headers to send upstream: the client's, minus hop-by-hop, minus HTTP/2 pseudo-headers, minus
 * forwarding headers from untrusted peers (the gateway sets its own below). Names `scrub` picks (the
 * hardening list from untrusted peers, `_` names from anyone) are removed from the request itself too,
 * before any filter reads it, and kept aside in `ctx.scrubbed` for a route that takes some back.
 */
export function upstreamHeadersFrom(
  headers: IncomingHttpHeaders,
  trustedPeer: boolean,
  scrub: ((name: string, trustedPeer: boolean) => boolean) | null = null,
  ctx: RequestContext | null = null,
): HeaderMap {
  const listed = connectionListed(headers.connection);
  const out: HeaderMap = {};
  for (const name in headers) {
    if (name.charCodeAt(0) === 0x3a /* ':' pseudo-header */) continue;
    if (HOP_BY_HOP.has(name)) continue;
    if (listed !== null && listed.has(name)) continue;
    if (scrub !== null && scrub(name, trustedPeer)) {
      if (ctx !== null) (ctx.scrubbed ??= {})[name] = headers[name];
      delete headers[name];
      continue;
    }
    if (!trustedPeer && FORWARDING.has(name)) continue;
    out[name] = headers[name];
  }
  return out;
}

/** Copies upstream response headers for the client, minus hop-by-hop ones. */
export function responseHeadersFrom(headers: Record<string, string | string[] | undefined>): HeaderMap {
  const listed = connectionListed(headers.connection);
  const out: HeaderMap = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name)) continue;
    if (listed !== null && listed.has(name)) continue;
    out[name] = headers[name];
  }
  return out;
}

function lastValue(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

/** Hop addresses of `Forwarded: for=...` (RFC 7239), in order. */
function forwardedFor(value: string): string[] {
  const out: string[] = [];
  for (const element of value.split(',')) {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      if (eq === -1 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
      let v = pair.slice(eq + 1).trim().replace(/^"|"$/g, '');
      if (v.startsWith('[')) v = v.slice(1, v.indexOf(']'));
      else if (v.split(':').length === 2) v = v.slice(0, v.indexOf(':'));
      out.push(v);
    }
  }
  return out;
}

export interface ClientIdentity {
  clientIp: string;
  trusted: boolean;
  /** Scheme claimed by a trusted proxy, else null. */
  proto: 'http' | 'https' | null;
  /** Host claimed by a trusted proxy, else null. */
  host: string | null;
}

/**
 * The client address: walk the X-Forwarded-For (or Forwarded) chain from the right while each hop is a
 * trusted proxy; the first untrusted hop is the client. From an untrusted peer nothing is believed.
 */
export function identifyClient(peer: string, headers: IncomingHttpHeaders, trusted: CidrSet): ClientIdentity {
  const peerIp = canonicalAddress(peer);
  if (trusted.size === 0 || !trusted.has(peerIp)) return { clientIp: peerIp, trusted: false, proto: null, host: null };
  const xff = lastValue(headers['x-forwarded-for']);
  const fwd = xff === undefined ? lastValue(headers.forwarded) : undefined;
  const hops = xff !== undefined ? xff.split(',').map((s) => s.trim()) : fwd !== undefined ? forwardedFor(fwd) : [];
  let clientIp = peerIp;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = canonicalAddress(hops[i]!);
    if (!hop) break;
    clientIp = hop;
    if (!trusted.has(hop)) break;
  }
  const protoHeader = lastValue(headers['x-forwarded-proto'])?.split(',').pop()?.trim().toLowerCase();
  const proto = protoHeader === 'https' ? 'https' : protoHeader === 'http' ? 'http' : null;
  const hostHeader = lastValue(headers['x-forwarded-host'])?.split(',').pop()?.trim().toLowerCase() ?? null;
  return { clientIp, trusted: true, proto, host: hostHeader || null };
}

/** Sets X-Forwarded-For/Proto/Host from what the gateway knows. */
export function setForwardingHeaders(out: HeaderMap, peerIp: string, trusted: boolean, scheme: string, host: string): void {
  const prior = trusted ? lastValue(out['x-forwarded-for']) : undefined;
  out['x-forwarded-for'] = prior ? `${prior}, ${peerIp}` : peerIp;
  out['x-forwarded-proto'] = scheme;
  // A trusted proxy's X-Forwarded-Host names the host the client addressed; keep it.
  if (!trusted || out['x-forwarded-host'] === undefined) out['x-forwarded-host'] = host;
}

/** The request target sent upstream: the rewritten path (or the normalized one) and the query. */
export function upstreamTarget(ctx: RequestContext): string {
  const path = ctx.upstreamPath ?? ctx.path;
  return ctx.query === '' ? path : path + ctx.query;
}

/**
 * Makes `ctx.upstreamHeaders` the headers the upstream gets, once the filters are done: `Expect` removed
 * (the gateway answers 100-continue itself), `Host` the client's unless a filter set one, X-Forwarded-*,
 * and `te: trailers` for HTTP/2 upstreams (gRPC). The gateway calls it before forwarding and `explain`
 * calls it to show the same request, so the two cannot drift. Returns the request target.
 */
export function finishUpstreamRequest(ctx: RequestContext, http2Upstream: boolean): string {
  const headers = ctx.upstreamHeaders;
  delete headers.expect;
  if (headers.host === undefined) headers.host = ctx.authority;
  setForwardingHeaders(headers, ctx.peerIp, ctx.peerTrusted, ctx.scheme, ctx.authority);
  // The verified client certificate, while it is valid (a certificate may expire while its connection
  // lives on); client-sent copies were removed with the untrusted headers.
  const cert = ctx.clientCert;
  if (cert !== null && cert.xfcc !== null && Date.now() < cert.validTo) headers[CLIENT_CERT_HEADER] = cert.xfcc;
  if (http2Upstream) {
    // gRPC needs `te: trailers` end to end; HTTP/2 allows exactly that value of this hop-by-hop header.
    const te = ctx.requestHeaders.te;
    if (typeof te === 'string' && /\btrailers\b/i.test(te)) headers.te = 'trailers';
  }
  return upstreamTarget(ctx);
}
