// Production mode: `portcullis validate --production` prints every problem as a deployment checklist, and a
// `mode: production` policy refuses to start naming the same problems, missing secrets included.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { filterModules } from '../../src/filters/index.ts';
import { CLI, runCli, startGateway, writePolicy } from '../helpers/gateway.ts';

const INSECURE = `version: 1
mode: development
listeners:
  - address: 127.0.0.1:0
admin:
  address: 0.0.0.0:0
upstreams:
  app: { url: "\${env:PORTCULLIS_TEST_APP_URL}" }
routes:
  - match: { path_prefix: / }
    upstream: app
`;

// Once an auth filter is in the registry, production mode wants every route authenticated or `auth: none`.
const AUTH_NONE = filterModules.some((m) => m.routeKey === 'auth') ? '\n    auth: none' : '';

const SECURE = `version: 1
mode: production
listeners:
  - address: 127.0.0.1:0
trusted_proxies: [127.0.0.1/32]
admin:
  address: 0.0.0.0:0
  protected_by: network_policy
upstreams:
  app: { url: http://127.0.0.1:9 }
routes:
  - match: { path_prefix: / }
    upstream: app${AUTH_NONE}
`;

describe('production checklist', () => {
  it('validate --production lists every problem at once as unchecked items, missing secrets included', async () => {
    const file = writePolicy(INSECURE);
    const r = await runCli(['validate', file, '--production']);
    expect(r.code).toBe(1);
    const items = r.stdout.split('\n').filter((l) => l.startsWith('  [ ] '));
    // The core items (filter modules may add theirs, e.g. an unauthenticated route), in file order.
    const lines = items.map((l) => Number(/^ {2}\[ \] \S+:(\d+):\d+: /.exec(l)?.[1]));
    expect(lines).toEqual(expect.arrayContaining([2, 4, 6, 8]));
    expect(lines).toEqual([...lines].sort((a, b) => a - b));
    expect(r.stdout).toMatch(new RegExp(`^production checklist for .*: ${items.length} item\\(s\\) to fix before deploying$`, 'm'));
    expect(items.join('\n')).toContain('mode: development');
    expect(items.join('\n')).toContain('plain-HTTP listener');
    expect(items.join('\n')).toContain('admin listener');
    expect(items.join('\n')).toContain('PORTCULLIS_TEST_APP_URL is not set');
  });

  it('without --production a development policy is only checked for errors', async () => {
    const file = writePolicy(INSECURE);
    const r = await runCli(['validate', file], { PORTCULLIS_TEST_APP_URL: 'http://127.0.0.1:9' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('development mode: not checked for production');
  });

  it('passes a policy with nothing missing, with admin.protected_by for a non-loopback admin address', async () => {
    const r = await runCli(['validate', writePolicy(SECURE), '--production']);
    expect(r.stdout).toContain('production checklist: nothing missing');
    expect(r.code).toBe(0);
  });

  it('a production policy refuses to start, naming every problem at once', async () => {
    const text = INSECURE.replace('mode: development', 'mode: production');
    const file = writePolicy(text);
    const r = await runCli(['start', '--config', file]);
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith(file));
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(r.stderr).toContain('PORTCULLIS_TEST_APP_URL is not set');
    expect(r.stderr).toContain('plain-HTTP listener');
    expect(r.stderr).toContain('admin listener');
  });

  it('development mode starts with a loud warning: a warn line in the error log, a banner on a terminal', async () => {
    const text = INSECURE.replace('0.0.0.0:0', '127.0.0.1:0');
    const gw = await startGateway(text, { env: { PORTCULLIS_TEST_APP_URL: 'http://127.0.0.1:9' } });
    try {
      // Piped stderr stays one JSON line per entry (log collectors); the warning is one of them.
      const lines = gw.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string });
      expect(lines.find((l) => l.msg.startsWith('DEVELOPMENT MODE'))?.level).toBe(40);
    } finally {
      expect(await gw.stop()).toBe(0);
    }
    // On a terminal (a pty from util-linux `script`), the banner as well.
    const file = writePolicy(text);
    const cmd = `timeout -s TERM 4 ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} start --config ${JSON.stringify(file)}`;
    const r = spawnSync('script', ['-qefc', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, PORTCULLIS_TEST_APP_URL: 'http://127.0.0.1:9' }, timeout: 15_000 });
    expect(r.stdout).toContain('*** PORTCULLIS IS RUNNING IN DEVELOPMENT MODE: INSECURE SETTINGS ARE ALLOWED ***');
  }, 30_000);
});
