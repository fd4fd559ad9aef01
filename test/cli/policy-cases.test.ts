// Every policy that ships with a cases file (`X.cases.yaml` beside `X.yaml`, in config/ and
// config/examples/) passes its policy tests: `npm test` keeps the examples and their promises honest.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPolicyTests } from '../../src/cli/policy-test.ts';
import { ROOT } from '../helpers/gateway.ts';

const pairs: [string, string][] = [];
for (const dir of ['config', 'config/examples']) {
  const abs = join(ROOT, dir);
  if (!existsSync(abs)) continue;
  for (const f of readdirSync(abs)) {
    if (!f.endsWith('.cases.yaml')) continue;
    const policy = join(abs, f.replace(/\.cases\.yaml$/, '.yaml'));
    if (existsSync(policy)) pairs.push([policy, join(abs, f)]);
  }
}

// Vitest puts Vite's BASE_URL=/ (and MODE, DEV, PROD, SSR) into process.env; the environment wins over a
// cases file's `env:`, and app 000's policy reads its own BASE_URL, so the test runs without Vite's.
for (const k of ['BASE_URL', 'MODE', 'DEV', 'PROD', 'SSR']) delete process.env[k];

describe('example policy cases', () => {
  it('finds the shipped cases files', () => {
    expect(pairs.map(([, c]) => c.slice(ROOT.length + 1))).toEqual(expect.arrayContaining(['config/portcullis.cases.yaml', 'config/examples/identity-rbac.cases.yaml']));
  });

  it.each(pairs.map(([p, c]) => [c.slice(ROOT.length + 1), p, c]))('%s', async (_name, policy, cases) => {
    const r = await runPolicyTests(policy!, cases!);
    expect(r.output).toMatch(/ 0 failed/);
    expect(r.ok).toBe(true);
  });
});
