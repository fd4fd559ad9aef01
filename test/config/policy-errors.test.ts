// YAML in, errors with positions out.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileText } from '../../src/policy/compile.ts';
import { PolicyError } from '../../src/config/errors.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';

const telemetry = quietTelemetry(new Metrics({ defaultMetrics: false }));

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    const p = compileText(text, 'policy.yaml', { telemetry }, env);
    void p.close();
  } catch (err) {
    if (err instanceof PolicyError) return err.message.split('\n');
    throw err;
  }
  return [];
}

const BASE = `version: 1
listeners:
  - address: 127.0.0.1:0
upstreams:
  app: { url: "http://127.0.0.1:3000" }
`;

describe('policy errors', () => {
  it('accepts a minimal valid policy', () => {
    expect(problems(BASE + 'routes:\n  - match: { path_prefix: / }\n    upstream: app\n')).toEqual([]);
  });

  it('positions errors in the passive-health keys (health.passive.status_5xx)', () => {
    const text = `version: 1
listeners:
  - address: 127.0.0.1:0
upstreams:
  app:
    targets: ["http://127.0.0.1:3000", "http://127.0.0.1:3001"]
    health:
      passive: { status_5xx: sometimes, status_4xx: true }
routes:
  - match: { path_prefix: / }
    upstream: app
`;
    const out = problems(text);
    expect(out.some((l) => l.startsWith('policy.yaml:8:30: '))).toBe(true);
    expect(out).toContain('policy.yaml:8:41: unknown key "status_4xx" (did you mean "status_5xx"?)');
  });

  it('positions errors in the report-mode keys of ip_rules, cors and body', () => {
    const out = problems(BASE + `routes:
  - match: { path_prefix: / }
    upstream: app
    ip_rules: { allow: [10.0.0.0/8], mode: shadow }
    cors: { origins: [https://a.example.com], mode: dry-run }
    body: { content_types: [application/json], mode: Report }
`);
    expect(out.length).toBe(3);
    expect(out[0]).toMatch(/^policy\.yaml:9:44: /);
    expect(out[1]).toMatch(/^policy\.yaml:10:53: /);
    expect(out[2]).toMatch(/^policy\.yaml:11:54: /);
  });

  it('names an unknown key with its position and the nearest valid key', () => {
    const out = problems(BASE + 'routes:\n  - match: { path_prefx: / }\n    upstream: app\n');
    expect(out).toEqual(['policy.yaml:7:14: unknown key "path_prefx" (did you mean "path_prefix"?)']);
  });

  it('reports every problem at once, each with FILE:LINE:COLUMN', () => {
    const text = `version: 1
listeners:
  - address: 127.0.0.1:0
    http2: yes please
trusted_proxies: [10.0.0.0/33]
limits:
  header_timeout: 10 seconds
upstreams:
  app: { url: "http://127.0.0.1:3000", timeout: 5x }
routes:
  - match: { path: /a }
    upstream: ap
`;
    const out = problems(text);
    expect(out).toContain('policy.yaml:4:12: expected true or false, got string "yes please"');
    expect(out.some((l) => l.startsWith('policy.yaml:5:19: invalid CIDR'))).toBe(true);
    expect(out.some((l) => l.startsWith('policy.yaml:7:19: invalid duration'))).toBe(true);
    expect(out.some((l) => l.startsWith('policy.yaml:9:49: invalid duration'))).toBe(true);
  });

  it('names an unknown upstream referenced by a route', () => {
    const out = problems(BASE + 'routes:\n  - match: { path: /a }\n    upstream: ap\n');
    expect(out).toEqual(['policy.yaml:8:15: unknown upstream "ap" (did you mean "app"?)']);
  });

  it('refuses duplicate routes', () => {
    const out = problems(BASE + 'routes:\n  - match: { path: /a }\n    upstream: app\n  - match: { path: /a }\n    upstream: app\n');
    expect(out.length).toBe(2); // same derived name, same match
    expect(out.some((l) => l.startsWith('policy.yaml:9:12: duplicate route: routes[0]'))).toBe(true);
  });

  it('refuses wrong types', () => {
    const out = problems(BASE + 'routes:\n  - match: { path: /a, methods: 5 }\n    upstream: app\nworkers: many\n');
    expect(out).toContain('policy.yaml:7:33: "5" is not a valid upper-case HTTP method');
    expect(out.some((l) => l.startsWith('policy.yaml:9:10: expected one of auto'))).toBe(true);
  });

  it('resolves ${env:} and ${file:}, and a missing one is an error naming it', () => {
    const text = BASE.replace('http://127.0.0.1:3000', '${env:UPSTREAM_URL}') + 'routes:\n  - match: { path: /a }\n    upstream: app\n';
    expect(problems(text, { UPSTREAM_URL: 'http://127.0.0.1:4000' })).toEqual([]);
    expect(problems(text, {})).toEqual(['policy.yaml:5:15: environment variable UPSTREAM_URL is not set (referenced as ${env:UPSTREAM_URL})']);
  });

  it('takes an integer from ${env:} (decimal digits only)', () => {
    const text = BASE + 'limits: { max_headers: "${env:MAX_HEADERS}" }\nroutes:\n  - match: { path: /a }\n    upstream: app\n';
    expect(problems(text, { MAX_HEADERS: '60' })).toEqual([]);
    expect(problems(text, { MAX_HEADERS: '60req' }).join('\n')).toContain('expected an integer, got string');
    expect(problems(text, { MAX_HEADERS: '-1' }).join('\n')).toContain('expected an integer, got string');
    expect(problems(text, { MAX_HEADERS: '1e3' }).join('\n')).toContain('expected an integer, got string');
  });

  it('${env:NAME:-default} takes the default when NAME is unset or empty', () => {
    const text = BASE.replace('http://127.0.0.1:3000', '${env:UPSTREAM_URL:-http://127.0.0.1:4000}') + 'routes:\n  - match: { path: /a }\n    upstream: app\n';
    expect(problems(text, {})).toEqual([]);
    expect(problems(text, { UPSTREAM_URL: '' })).toEqual([]);
    expect(problems(text, { UPSTREAM_URL: 'not a url' }).join('\n')).toContain('policy.yaml:5:15:');
    const p = compileText(text, 'policy.yaml', { telemetry }, {});
    expect(JSON.stringify(p.policy)).toContain('http://127.0.0.1:4000');
    void p.close();
    const empty = BASE.replace('http://127.0.0.1:3000', '${env:UPSTREAM_URL:-}') + 'routes:\n  - match: { path: /a }\n    upstream: app\n';
    expect(problems(empty, {})).toEqual(['policy.yaml:5:15: environment variable UPSTREAM_URL is not set (referenced as ${env:UPSTREAM_URL})']);
  });

  it('never prints a resolved secret in an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-secret-'));
    writeFileSync(join(dir, 'secret.txt'), 'hunter2-very-secret\n');
    const text = BASE.replace('version: 1', `version: 1\nmode: \${file:${join(dir, 'secret.txt')}}`) + 'routes:\n  - match: { path: /a }\n    upstream: app\n';
    const out = problems(text).join('\n');
    expect(out).toContain('expected one of development, production');
    expect(out).not.toContain('hunter2-very-secret');
    expect(out).toContain('********');
  });

  it('reports YAML syntax errors with their position', () => {
    const out = problems('version: 1\nlisteners: [\n');
    expect(out[0]).toMatch(/^policy\.yaml:\d+:\d+: YAML: /);
  });

  it('refuses a plain listener in production mode unless behind a trusted proxy', () => {
    const text = BASE.replace('version: 1', 'version: 1\nmode: production') + 'routes:\n  - match: { path: /a }\n    upstream: app\n';
    expect(problems(text)[0]).toMatch(/^policy\.yaml:4:5: production: a plain-HTTP listener/);
  });
});

describe('rate-limit errors: count and body-field keys', () => {
  const AUTH = `auth:
  default: main
  providers:
    main: { jwt: { algorithms: [HS256], keys: [{ kid: k1, secret: "0123456789abcdef0123456789abcdef" }] } }
`;

  it('accepts a count: refused limit on an authenticated route', () => {
    const text = BASE + AUTH + 'rate_limits:\n  refusals: { key: client_ip, limit: 5, window: 1m, count: refused }\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n    rate_limit: refusals\n';
    expect(problems(text)).toEqual([]);
  });

  it('names a misspelled count value with its position', () => {
    const text = BASE + 'rate_limits:\n  refusals: { limit: 5, window: 1m, count: refusals }\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n';
    expect(problems(text)).toEqual(['policy.yaml:7:44: expected one of requests, refused, got string "refusals"']);
  });

  it('refuses a count: refused limit keyed on a verified identity, at the key part', () => {
    const text = BASE + AUTH + 'rate_limits:\n  refusals: { key: [client_ip, subject], limit: 5, window: 1m, count: refused }\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n';
    expect(problems(text)).toEqual(['policy.yaml:11:32: a count: refused limit cannot be keyed on subject: a refused request has no verified identity (use client_ip, route, token, header:NAME or a body field)']);
  });

  it('refuses a count: refused limit on a route nothing authenticates, at the route\'s list entry', () => {
    const text = BASE + 'rate_limits:\n  refusals: { limit: 5, window: 1m, count: refused }\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n    rate_limit: [refusals]\n';
    expect(problems(text)).toEqual(['policy.yaml:11:18: limit "refusals" counts the requests auth or authorize refuse (count: refused), but this route is not authenticated: nothing would ever be counted']);
  });
});

describe('rate-limit errors: body-field keys', () => {
  it('accepts form: and json: key parts, alone and combined', () => {
    const text = BASE + 'rate_limits:\n  login: { key: [form:username, route], limit: 5, window: 1m }\n  api: { key: json:email, limit: 5, window: 1m }\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n    rate_limit: [login, api]\n';
    expect(problems(text)).toEqual([]);
  });

  it('names a body key part without a field, or a JSON path (top-level members only), at the part', () => {
    const text = BASE + 'rate_limits:\n  login: { key: [client_ip, "form:"], limit: 5, window: 1m }\n  api: { key: json:user.email, limit: 5, window: 1m }\nroutes:\n  - match: { path_prefix: / }\n    upstream: app\n';
    expect(problems(text)).toEqual([
      'policy.yaml:7:29: "form:" is not a valid key (client_ip, route, token, subject, credential, claim:NAME, header:NAME, form:NAME, json:NAME)',
      'policy.yaml:8:15: "json:user.email" is not a valid key (client_ip, route, token, subject, credential, claim:NAME, header:NAME, form:NAME, json:NAME)',
    ]);
  });
});
