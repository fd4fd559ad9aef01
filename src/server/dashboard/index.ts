// The admin dashboard: a read-only page on the admin listener (`/dashboard/`), its script and style as
// files of their own (the page runs under `default-src 'none'; script-src 'self'; style-src 'self'`), a
// JSON state the page polls (`/dashboard/state`) and the explain form's endpoint (`POST
// /dashboard/explain`, answered by the same function as `portcullis explain`). Everything shown is read
// from what the gateway already has: the metrics registry (sampled on a timer, see sampler.ts), the
// compiled policy and the modules' status reports. The request path does no work for it.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { explainRequest } from '../explain.ts';
import { StatsSampler } from './sampler.ts';
import { dashboardState, type DashboardSource } from './state.ts';

export type { DashboardSource, ReloadRecord } from './state.ts';

/** The page's policy: nothing but its own files and its own JSON endpoints. */
export const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
};

const MAX_EXPLAIN_BODY = 64 * 1024;

function asset(name: string): Buffer {
  return readFileSync(new URL(`./assets/${name}`, import.meta.url));
}

function problem(res: ServerResponse, status: number, reason: string, detail: string, extra: Record<string, string> = {}): void {
  const body = JSON.stringify({ type: `https://portcullis.dev/reasons/${reason}`, status, reason, detail });
  res.writeHead(status, { ...SECURITY_HEADERS, ...extra, 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * DNS rebinding: a web page whose name resolves to the admin address would be same-origin with the
 * dashboard. Only IP literals, `localhost` and the admin address's own host name are answered.
 */
export function hostAllowed(host: string | undefined, adminHost: string): boolean {
  if (host === undefined) return false;
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '')).toLowerCase();
  return isIP(name) !== 0 || name === 'localhost' || name === adminHost.toLowerCase().replace(/^\[|\]$/g, '');
}

export class Dashboard {
  readonly #source: DashboardSource;
  readonly #sampler: StatsSampler;
  readonly #adminHost: string;
  readonly #files: Map<string, { type: string; body: Buffer }>;

  constructor(source: DashboardSource, options: { adminHost: string; intervalMs?: number }) {
    this.#source = source;
    this.#adminHost = options.adminHost;
    this.#sampler = new StatsSampler(source.metrics.registry, { intervalMs: options.intervalMs });
    this.#files = new Map([
      ['/dashboard/', { type: 'text/html; charset=utf-8', body: asset('index.html') }],
      ['/dashboard/dashboard.js', { type: 'text/javascript; charset=utf-8', body: asset('dashboard.js') }],
      ['/dashboard/dashboard.css', { type: 'text/css; charset=utf-8', body: asset('dashboard.css') }],
    ]);
    this.#sampler.start();
  }

  /** Answers `/` and `/dashboard...` paths; false for any other path (the admin listener goes on). */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path !== '/' && path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
    if (!hostAllowed(req.headers.host, this.#adminHost)) {
      problem(res, 403, 'host_not_allowed', 'the dashboard answers requests addressed to an IP address, localhost or the admin host name only');
      return true;
    }
    if (path === '/' || path === '/dashboard') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return false;
      res.writeHead(302, { ...SECURITY_HEADERS, location: '/dashboard/', 'content-length': 0 });
      res.end();
      return true;
    }
    if (path === '/dashboard/explain') {
      if (req.method !== 'POST') problem(res, 405, 'method_not_allowed', 'use POST', { allow: 'POST' });
      else this.#explain(req, res);
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      problem(res, 405, 'method_not_allowed', 'use GET', { allow: 'GET, HEAD' });
      return true;
    }
    if (path === '/dashboard/state') {
      const policy = this.#source.policy();
      dashboardState(this.#source, this.#sampler).then(
        (state) => send(res, 200, 'application/json', policy.source.secrets.mask(JSON.stringify(state))),
        (err: unknown) => problem(res, 500, 'internal_error', err instanceof Error ? err.message : String(err)),
      );
      return true;
    }
    const file = this.#files.get(path);
    if (file === undefined) {
      problem(res, 404, 'not_found', 'no such dashboard file');
      return true;
    }
    send(res, 200, file.type, file.body);
    return true;
  }

  /** `{ method, url, headers }` in, the `portcullis explain` answer out. JSON only: a cross-site form cannot send it. */
  #explain(req: IncomingMessage, res: ServerResponse): void {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      req.resume();
      problem(res, 415, 'unsupported_media_type', 'send the request to explain as application/json');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_EXPLAIN_BODY) over = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (over) return problem(res, 413, 'body_too_large', `at most ${MAX_EXPLAIN_BODY} bytes`);
      let input: { method?: unknown; url?: unknown; headers?: unknown; client_ip?: unknown };
      try {
        input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof input;
      } catch {
        return problem(res, 400, 'invalid_explain_request', 'the body is not JSON');
      }
      const method = input?.method;
      const url = input?.url;
      const headers: Record<string, string> = {};
      if (input?.headers !== undefined && (input.headers === null || typeof input.headers !== 'object' || Array.isArray(input.headers))) {
        return problem(res, 400, 'invalid_explain_request', '"headers" is an object of names to values');
      }
      for (const [k, v] of Object.entries((input?.headers ?? {}) as Record<string, unknown>)) {
        if (typeof v !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) return problem(res, 400, 'invalid_explain_request', `header "${k}": names are tokens, values strings`);
        headers[k.toLowerCase()] = v;
      }
      if (typeof method !== 'string' || !/^[A-Za-z]{1,20}$/.test(method) || typeof url !== 'string' || url === '' || url.length > 8192 || !/^(\/|https?:\/\/)/i.test(url)) {
        return problem(res, 400, 'invalid_explain_request', 'give "method" (a token) and "url" (a path starting with / or an http(s) URL)');
      }
      const clientIp = input?.client_ip;
      if (clientIp !== undefined && clientIp !== '' && (typeof clientIp !== 'string' || isIP(clientIp) === 0)) {
        return problem(res, 400, 'invalid_explain_request', '"client_ip" is an IPv4 or IPv6 address');
      }
      const policy = this.#source.policy();
      explainRequest(policy, { method, url, headers, ...(typeof clientIp === 'string' && clientIp !== '' ? { clientIp } : {}) }).then(
        (out) => send(res, 200, 'application/json', policy.source.secrets.mask(JSON.stringify(out, null, 2)) + '\n'),
        (err: unknown) => problem(res, 400, 'invalid_explain_request', err instanceof Error ? err.message : String(err)),
      );
    });
  }

  close(): void {
    this.#sampler.close();
  }
}
