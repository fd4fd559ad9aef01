// The audit module: which requests get an audit line and with which action (verdict table over the
// compiled chain), and its policy errors.
import { describe, expect, it } from 'vitest';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';
import { compileText, type CompiledPolicy } from '../../src/policy/compile.ts';
import { PolicyError } from '../../src/config/errors.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { RequestContext } from '../../src/contract/context.ts';

const telemetry = quietTelemetry(new Metrics({ defaultMetrics: false }));

const policy = (extra: string, routes: string) => `version: 1
listeners:
  - address: 127.0.0.1:0
upstreams:
  app: { url: "http://127.0.0.1:3000" }
${extra}
routes:
${routes}`;

const ROUTES = `  - name: login
    match: { path: /login }
    upstream: app
    audit: login
  - name: files
    match: { path_prefix: /files }
    upstream: app
    audit: [{ action: upload, methods: [POST, PUT] }, { action: download, methods: GET }]
  - name: mixed
    match: { path_prefix: /mixed }
    upstream: app
    audit: [{ action: remove, methods: [DELETE] }, { action: touch }]
  - name: api
    match: { path_prefix: /api }
    upstream: app
  - name: reads
    match: { path_prefix: /reads, methods: [GET, HEAD] }
    upstream: app
`;

function auditOf(p: CompiledPolicy, method: string, path: string): string | null {
  const route = p.router.match('example.com', method, path)!;
  const ctx = new RequestContext(method, '1.1', {}, '127.0.0.1', 'http', 0);
  for (const hook of route.request ?? []) void hook(ctx);
  return ctx.audit;
}

describe('audit', () => {
  it('marks named routes, per method when asked', () => {
    const p = compileText(policy('', ROUTES), 'p.yaml', { telemetry }, {});
    expect(auditOf(p, 'POST', '/login')).toBe('login');
    expect(auditOf(p, 'GET', '/login')).toBe('login');
    expect(auditOf(p, 'POST', '/files/a')).toBe('upload');
    expect(auditOf(p, 'GET', '/files/a')).toBe('download');
    expect(auditOf(p, 'HEAD', '/files/a')).toBeNull();
    expect(auditOf(p, 'DELETE', '/mixed/a')).toBe('remove');
    expect(auditOf(p, 'GET', '/mixed/a')).toBe('touch');
    expect(auditOf(p, 'POST', '/api/x')).toBeNull();
    expect(p.routes.find((r) => r.name === 'api')!.request).toBeNull(); // nothing to do: no hook at all
    void p.close();
  });

  it('audits every write method when the policy says so (app 004)', () => {
    const p = compileText(policy('audit: { write_methods: true }', ROUTES), 'p.yaml', { telemetry }, {});
    expect(auditOf(p, 'POST', '/api/x')).toBe('write');
    expect(auditOf(p, 'PATCH', '/api/x')).toBe('write');
    expect(auditOf(p, 'DELETE', '/api/x')).toBe('write');
    expect(auditOf(p, 'GET', '/api/x')).toBeNull();
    expect(auditOf(p, 'DELETE', '/files/a')).toBe('write');
    expect(auditOf(p, 'PUT', '/files/a')).toBe('upload');
    expect(auditOf(p, 'POST', '/login')).toBe('login');
    // a read-only route has nothing to audit
    expect(p.routes.find((r) => r.name === 'reads')!.request).toBeNull();
    void p.close();
  });

  it('rejects invalid action names with their position', () => {
    try {
      compileText(policy('', ROUTES.replace('audit: login', 'audit: "log in"')), 'p.yaml', { telemetry }, {});
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PolicyError);
      expect((err as Error).message).toMatch(/^p\.yaml:\d+:\d+: "log in" is not a valid action name/);
    }
  });
});
