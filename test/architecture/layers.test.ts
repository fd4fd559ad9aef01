// The source tree's layers (docs/architecture.md): every import, type-only and dynamic ones included,
// points to the importing file's own directory or to a layer below it, and no set of files imports
// itself in a cycle. A new top-level directory under src/ must be placed here first.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from '../helpers/gateway.ts';

/** Bottom first. Directories on one line are siblings: they may not import each other. */
const LAYERS: readonly (readonly string[])[] = [
  ['config'], // the policy language: YAML with positions, the schema language, secrets, CIDRs
  ['contract'], // the types every layer shares: RequestContext, FilterModule, Deny, Telemetry, observers
  ['observability', 'ratelimit', 'proxy'], // metrics/logs/traces; GCRA and its stores; HTTP mechanics
  ['auth'], // key sets, token verification, identity providers
  ['filters'], // the protections, one module each, and the registry that orders them
  ['policy'], // the compiler: policy file → per-route filter chains, router, upstreams
  ['server'], // listeners, the gateway's request path, reload, admin and dashboard
  ['cli'], // the portcullis command
];

const SRC = join(ROOT, 'src');
const level = new Map(LAYERS.flatMap((dirs, i) => dirs.map((d) => [d, i] as const)));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [
    ...text.matchAll(/^\s*(?:import|export)\b[^'";]*?\bfrom\s+['"](\.[^'"]+)['"]/gm),
    ...text.matchAll(/^\s*import\s+['"](\.[^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s));
}

const topDir = (file: string) => relative(SRC, file).split(sep)[0]!;
const files = sources(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

it('places every source directory in a layer', () => {
  const dirs = new Set(files.map(topDir).filter((d) => !d.endsWith('.ts')));
  expect([...dirs].filter((d) => !level.has(d))).toEqual([]);
  // and finds the imports it checks (a broken pattern would pass everything)
  expect([...graph.values()].flat().length).toBeGreaterThan(250);
});

it('imports only point down', () => {
  const upward: string[] = [];
  for (const [file, targets] of graph) {
    const from = topDir(file);
    for (const target of targets) {
      const to = topDir(target);
      if (to === from || !level.has(from) || !level.has(to)) continue;
      if (level.get(to)! >= level.get(from)!) upward.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
    }
  }
  expect(upward).toEqual([]);
});

it('has no import cycle between files', () => {
  // Tarjan's strongly connected components; any component of more than one file is a cycle.
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const component: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); component.push(relative(SRC, w)); } while (w !== v);
      if (component.length > 1) cycles.push(component.sort());
    }
  };
  for (const f of files) if (!idx.has(f)) visit(f);
  expect(cycles).toEqual([]);
});
