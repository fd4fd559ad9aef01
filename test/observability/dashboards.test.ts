// The Grafana dashboard and the Prometheus rules shipped for the Helm chart: rules pass `promtool check
// rules` and their unit tests (`promtool test rules`), every dashboard query is valid PromQL (checked by
// promtool as recording rules), and every metric they name is one the gateway or its filters export.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES, Metrics } from '../../src/observability/metrics.ts';
import { ROOT, tempDir } from '../helpers/gateway.ts';

const RULES = join(ROOT, 'helm/portcullis/files/prometheus-rules.yaml');
const RULE_TESTS = join(ROOT, 'test/observability/prometheus-rules.test.yaml');
const DASHBOARD = join(ROOT, 'helm/portcullis/files/grafana-dashboard.json');

function promtool(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: ROOT });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; title: string; panels: Panel[]; templating: { list: { name: string }[] } };
const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

async function knownMetricNames(): Promise<Set<string>> {
  const m = new Metrics({ defaultMetrics: true });
  const names = new Set<string>((await m.registry.getMetricsAsJSON()).map((x) => x.name));
  for (const n of Object.values(METRIC_NAMES)) names.add(n);
  return names;
}

function referencedMetrics(text: string): string[] {
  const found = text.match(/\b(portcullis|process|nodejs)_[a-z0-9_]+/g) ?? [];
  return [...new Set(found.map((n) => n.replace(/_(bucket|count|sum)$/, '')))];
}

describe('prometheus rules', () => {
  it('pass promtool check rules', () => {
    const r = promtool('check', 'rules', RULES);
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  it('pass their unit tests (promtool test rules)', () => {
    const r = promtool('test', 'rules', RULE_TESTS);
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  it('name only metrics that exist', async () => {
    const known = await knownMetricNames();
    const text = readFileSync(RULES, 'utf8').replace(/record: \S+/g, '');
    for (const name of referencedMetrics(text)) expect(known, name).toContain(name);
  });
});

describe('grafana dashboard', () => {
  it('is a dashboard with unique panel ids and the variables its queries use', () => {
    expect(dashboard.uid).toBe('portcullis-overview');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'route']);
    expect(exprs.length).toBeGreaterThan(20);
  });

  it('shows what operators asked for', () => {
    const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const t of ['request rate', 'error rate', 'latency p50 / p95 / p99', 'denies by reason', 'rate limited', 'redis', 'jwks', 'reloads']) {
      expect(titles).toContain(t);
    }
  });

  it('has only valid PromQL (checked by promtool) over metrics that exist', async () => {
    const known = await knownMetricNames();
    for (const e of exprs) for (const name of referencedMetrics(e)) expect(known, name).toContain(name);
    // Grafana's variables replaced by what Grafana would send, each query turned into a recording rule.
    const rules = exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: e.replaceAll('$__rate_interval', '5m').replaceAll('$job', '.*').replaceAll('$route', '.*') }));
    const file = join(tempDir(), 'dashboard-rules.yaml');
    writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
    const r = promtool('check', 'rules', file);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
  });
});
