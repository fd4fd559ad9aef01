// "Off costs nothing": with tracing off no OpenTelemetry module is loaded. The gateway's static import graph
// (what loads whatever the policy says) must not reach @opentelemetry; only the tracing module imports it,
// and run.ts loads that module dynamically, only when tracing is on.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/gateway.ts';

const STATIC_IMPORT = /^(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?'([^']+)'/gm;

function staticClosure(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(STATIC_IMPORT)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else packages.add(spec);
    }
  };
  visit(join(ROOT, entry));
  return { files, packages };
}

describe('tracing off', () => {
  it('loads no OpenTelemetry module', () => {
    for (const entry of ['src/cli/main.ts', 'src/server/run.ts', 'src/server/gateway.ts', 'src/policy/compile.ts']) {
      const { files, packages } = staticClosure(entry);
      expect([...packages].filter((p) => p.startsWith('@opentelemetry/')), entry).toEqual([]);
      expect([...files].some((f) => f.endsWith('observability/tracing.ts')), entry).toBe(false);
    }
    // The tracing module is where OpenTelemetry lives, and it is only imported dynamically.
    expect(staticClosure('src/observability/tracing.ts').packages).toContain('@opentelemetry/sdk-trace');
    expect(readFileSync(join(ROOT, 'src/server/run.ts'), 'utf8')).toMatch(/await import\('\.\.\/observability\/tracing\.ts'\)/);
  });
});
