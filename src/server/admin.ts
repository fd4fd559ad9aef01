// The admin listener (127.0.0.1 by default): liveness, readiness, reload, metrics and the dashboard. It
// never serves proxied traffic and is never reachable through a route.
import type { Server } from 'node:http';
import { createServer } from '../proxy/node-http.ts';
import type { Dashboard } from './dashboard/index.ts';
import { splitAddress } from './listeners.ts';

export interface AdminHandlers {
  ready(): { ready: boolean; checks: Record<string, string> };
  reload(): Promise<{ ok: true; hash: string } | { ok: false; errors: string[] }>;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** The dashboard (`/dashboard/`), null when the policy turns it off or the process has none. */
  dashboard?: Dashboard | null;
}

function json(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': status >= 400 && status !== 503 ? 'application/problem+json' : 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export async function startAdmin(address: string, handlers: AdminHandlers): Promise<{ server: Server; address: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) return json(res, 200, { status: 'ok' });
    if (path === '/readyz' && (req.method === 'GET' || req.method === 'HEAD')) {
      const r = handlers.ready();
      return json(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not_ready', checks: r.checks });
    }
    if (path === '/reload') {
      if (req.method !== 'POST') return json(res, 405, { type: 'https://portcullis.dev/reasons/method_not_allowed', status: 405, reason: 'method_not_allowed', detail: 'use POST' });
      handlers.reload().then(
        (r) => json(res, r.ok ? 200 : 422, r.ok ? { status: 'reloaded', policy_hash: r.hash } : { type: 'https://portcullis.dev/reasons/policy_invalid', status: 422, reason: 'policy_invalid', errors: r.errors }),
        (err: unknown) => json(res, 500, { status: 500, reason: 'internal_error', detail: String(err instanceof Error ? err.message : err) }),
      );
      return;
    }
    if (path === '/metrics' && req.method === 'GET') {
      handlers.metrics().then(
        (m) => {
          res.writeHead(200, { 'content-type': m.contentType });
          res.end(m.body);
        },
        (err: unknown) => json(res, 500, { status: 500, reason: 'metrics_unavailable', detail: err instanceof Error ? err.message : String(err) }),
      );
      return;
    }
    if (handlers.dashboard && handlers.dashboard.handle(req, res, path)) return;
    json(res, 404, { type: 'https://portcullis.dev/reasons/not_found', status: 404, reason: 'not_found' });
  });
  const { host, port } = splitAddress(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  const shown = `${host.includes(':') ? `[${host}]` : host}:${typeof bound === 'object' && bound ? bound.port : port}`;
  return {
    server,
    address: shown,
    close: () => new Promise<void>((resolve) => {
      handlers.dashboard?.close();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
