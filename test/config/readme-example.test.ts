// The full policy example in docs/policy.md is a valid policy: the manual cannot show keys
// the validator refuses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { problems } from '../helpers/filters.ts';
import { ROOT } from '../helpers/gateway.ts';

it('the manual\'s full policy example validates', () => {
  const readme = readFileSync(join(ROOT, 'docs/policy.md'), 'utf8');
  const example = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.startsWith('version: 1'));
  expect(example).toBeDefined();
  expect(problems(example!)).toEqual([]);
});
