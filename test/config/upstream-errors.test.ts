// Upstream policy keys in, errors with positions out.
import { describe, expect, it } from 'vitest';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';
import { compileText } from '../../src/policy/compile.ts';
import { PolicyError } from '../../src/config/errors.ts';
import { Metrics } from '../../src/observability/metrics.ts';

const telemetry = quietTelemetry(new Metrics({ defaultMetrics: false }));

function problems(upstreams: string, mode = 'development'): string[] {
  const text = `version: 1
mode: ${mode}
listeners: [{ address: 127.0.0.1:0, tls: { cert: /dev/null, key: /dev/null } }]
upstreams:
${upstreams}
routes:
  - { match: { path_prefix: / }, upstream: app }
`;
  try {
    void compileText(text, 'policy.yaml', { telemetry }, {}).close();
  } catch (err) {
    if (err instanceof PolicyError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('upstream keys', () => {
  it('accepts targets with weights, balance, health, retries, http2', () => {
    expect(problems(`  app:
    targets: ["http://127.0.0.1:1", { url: "http://127.0.0.1:2", weight: 3, max_connections: 8 }]
    balance: least_request
    http2: true
    health: { failures: 3, ejection: 5s, max_ejection: 1m, check: { path: /healthz, interval: 1s, expected_status: [200, 204] } }
    retries: { attempts: 2, budget_percent: 10, min_concurrent: 1 }`)).toEqual([]);
  });

  it('names the place of each problem', () => {
    expect(problems(`  app:
    url: "http://127.0.0.1:1"
    targets: ["http://127.0.0.1:2"]`)).toEqual(['policy.yaml:6:5: give either "url" or "targets", not both']);
    expect(problems(`  app:
    targets: ["http://127.0.0.1:1", { url: "ftp://x", weight: 0 }]`)).toEqual([
      'policy.yaml:6:44: URL scheme must be one of http, https',
      'policy.yaml:6:63: must be at least 1, got 0',
    ]);
    expect(problems(`  app:
    url: "http://127.0.0.1:1"
    balance: least_requests`)).toEqual([expect.stringMatching(/^policy\.yaml:7:14: expected one of round_robin, least_request, .*did you mean "least_request"/)]);
    expect(problems(`  app:
    url: "https://127.0.0.1:1"
    tls: { ca: /nonexistent/ca.pem }`)).toEqual(['policy.yaml:7:16: cannot read /nonexistent/ca.pem: ENOENT']);
  });

  it('refuses turning off upstream certificate verification in production', () => {
    expect(problems(`  app:
    url: "https://127.0.0.1:1"
    tls: { verify: false }`, 'production')).toContainEqual('policy.yaml:7:20: production: upstream certificate verification cannot be turned off');
  });
});
