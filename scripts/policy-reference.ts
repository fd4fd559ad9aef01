// Writes docs/policy-reference.md from the policy schemas.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderPolicyReference } from '../src/policy/reference.ts';

writeFileSync(join(import.meta.dirname, '..', 'docs', 'policy-reference.md'), renderPolicyReference());
