// `portcullis explain FILE [METHOD URL]`: the compiled routes and filter chains, or the one a request takes.
// Output is built from compiled values and passed through the secret mask: resolved secrets never show.
import { loadAndCompile, type CompiledPolicy, type CompiledRoute } from '../config/compile.ts';
import { Metrics } from '../observability/metrics.ts';
import { normalizeTarget } from '../proxy/normalize.ts';
import { RequestContext } from '../proxy/context.ts';
import { hardeningRefusal, type Refusal } from '../server/admission.ts';
import { hostname } from '../server/gateway.ts';
import { quietTelemetry } from './quiet-telemetry.ts';

function maskUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password) copy.password = '********';
  return copy.href;
}

function describeRoute(route: CompiledRoute): Record<string, unknown> {
  return {
    route: route.name,
    match: route.matchDescription,
    upstream: route.upstream ? { name: route.upstream.name, url: maskUrl(route.upstream.targets[0]!.url), ...(route.upstream.targets.length > 1 ? { targets: route.upstream.targets.map((t) => maskUrl(t.url)) } : {}) } : null,
    max_body_size: route.maxBodySize,
    timeout_ms: route.timeoutMs ?? route.upstream?.config.timeout ?? null,
    filters: route.filters.map((f) => ({ filter: f.name, ...f.describe() })),
  };
}

export async function explain(file: string, method?: string, url?: string): Promise<string> {
  const policy: CompiledPolicy = loadAndCompile(file, { telemetry: quietTelemetry(new Metrics({ defaultMetrics: false })) });
  try {
    let out: unknown;
    const global = policy.globalFilters.map((f) => ({ filter: f.name, ...f.describe() }));
    if (method === undefined || url === undefined) {
      out = { policy: file, mode: policy.mode, hash: policy.hash, global_filters: global, routes: policy.routes.map(describeRoute) };
    } else {
      const parsed = /^https?:\/\//i.test(url) ? new URL(url) : new URL(url, 'http://localhost');
      const rawTarget = url.replace(/^https?:\/\/[^/?#]*/i, '') || '/';
      const target = normalizeTarget(rawTarget);
      if (typeof target === 'string') {
        out = { request: `${method} ${url}`, answer: { status: 400, reason: target } };
      } else {
        const host = hostname(parsed.host);
        const m = method.toUpperCase();
        const route = policy.router.match(host, m, target.path);
        let refused: Refusal | null = null;
        if (route !== null) {
          const ctx = new RequestContext(m, '1.1', { host: parsed.host }, '127.0.0.1', parsed.protocol === 'https:' ? 'https' : 'http', 0);
          ctx.path = target.path;
          ctx.query = target.query;
          ctx.host = host;
          ctx.targetFlags = target.flags;
          refused = hardeningRefusal(policy, route, ctx);
        }
        out = {
          request: `${m} ${url}`,
          normalized: { host, path: target.path, query: target.query },
          global_filters: global,
          ...(route ? describeRoute(route) : { answer: { status: 404, reason: 'route_not_found' } }),
          ...(refused !== null ? { answer: { status: refused.status, reason: refused.reason, ...(route!.hardening.report ? { mode: 'report: logged, not refused' } : {}) } } : {}),
        };
      }
    }
    return policy.source.secrets.mask(JSON.stringify(out, null, 2)) + '\n';
  } finally {
    await policy.close();
  }
}
