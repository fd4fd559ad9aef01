// The policy reference is generated from the schemas; this fails when docs/policy-reference.md is out of
// date (run `npm run docs:reference`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { renderPolicyReference } from '../../src/policy/reference.ts';
import { ROOT } from '../helpers/gateway.ts';

it('docs/policy-reference.md matches the schemas', () => {
  expect(readFileSync(join(ROOT, 'docs/policy-reference.md'), 'utf8')).toBe(renderPolicyReference());
});

it('documents every top-level key and every route key', () => {
  const text = renderPolicyReference();
  for (const key of ['listeners', 'upstreams', 'routes', 'auth', 'cors', 'headers', 'csrf', 'rate_limits', 'tracing']) expect(text).toContain(`## \`${key}\``);
  for (const key of ['match', 'auth', 'authorize', 'cors', 'csrf', 'rate_limit', 'rewrite', 'ip_rules', 'audit']) expect(text).toContain(`\`[].${key}\``);
});
