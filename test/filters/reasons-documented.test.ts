// Every deny reason a filter module declares is documented in the reason table (docs/reasons.md), and every
// module's reasons are a bounded list of snake_case codes (they are metric label values).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { filterModules } from '../../src/filters/index.ts';
import { HARDENING_REASONS } from '../../src/proxy/hardening.ts';
import { ROOT } from '../helpers/gateway.ts';

const table = readFileSync(join(ROOT, 'docs/reasons.md'), 'utf8');

describe('deny reasons', () => {
  it.each(filterModules.map((m) => [m.name, m.reasons] as const))('%s: reasons are snake_case codes, each in the reason table', (_name, reasons) => {
    for (const reason of reasons) {
      expect(reason).toMatch(/^[a-z][a-z0-9_]*$/);
      expect(table).toContain(`\`${reason}\``);
    }
  });

  it.each(HARDENING_REASONS.map((r) => [r]))('the request-path hardening reason %s is in the reason table', (reason) => {
    expect(table).toContain(`\`${reason}\``);
  });

  it('module names are unique', () => {
    const names = filterModules.map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
