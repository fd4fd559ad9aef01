// The browser-protection modules' declared deny reasons are in the reason table (docs/reasons.md), and the
// manual (docs/browser.md) names every policy key of their schemas.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bodyLimits } from '../../src/filters/body-limits.ts';
import { cookies } from '../../src/filters/cookies.ts';
import { cors } from '../../src/filters/cors.ts';
import { csrf } from '../../src/filters/csrf.ts';
import { securityHeaders } from '../../src/filters/security-headers.ts';
import type { DocNode } from '../../src/config/schema.ts';
import { ROOT } from '../helpers/gateway.ts';

const table = readFileSync(join(ROOT, 'docs/reasons.md'), 'utf8');
const manual = readFileSync(join(ROOT, 'docs/browser.md'), 'utf8');

describe('browser protections documentation', () => {
  it.each([cors, csrf, bodyLimits, securityHeaders, cookies].flatMap((m) => m.reasons.map((r) => [m.name, r])))('%s reason %s is in the reason table', (_m, reason) => {
    expect(table).toMatch(new RegExp(`^\\|[^\\n]*\`${reason}\``, 'm'));
  });

  it('documents every policy key of the modules (taken from their schemas)', () => {
    const section = manual;
    const keys = new Set<string>();
    const walk = (node: DocNode | undefined) => {
      if (!node) return;
      for (const [k, child] of Object.entries(node.fields ?? {})) {
        keys.add(k);
        walk(child);
      }
      walk(node.items);
    };
    for (const m of [cors, csrf, bodyLimits, securityHeaders, cookies]) walk(m.globalSchema!.doc());
    expect(keys.size).toBeGreaterThan(25);
    for (const key of keys) expect(section, key).toMatch(new RegExp(`\\b${key}:`));
  });
});
