// The policy reference, generated from the schemas themselves (core keys and every filter module's keys),
// so the documentation cannot drift from what the validator accepts. `npm run docs:reference` writes
// docs/policy-reference.md; a test fails when the committed file differs from a fresh rendering.
import { getPolicySchema } from './compile.ts';
import type { DocNode } from '../config/schema.ts';

function formatDefault(node: DocNode): string {
  const v = node.default;
  if (v === undefined) return '';
  if (node.type === 'duration' && typeof v === 'number') return v % 1000 === 0 ? `${v / 1000}s` : `${v}ms`;
  if (node.type === 'size' && typeof v === 'number') return v % (1024 * 1024) === 0 ? `${v / 1024 / 1024}MiB` : v % 1024 === 0 ? `${v / 1024}KiB` : String(v);
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 3) return '(see fields)';
  return JSON.stringify(v);
}

function render(name: string, node: DocNode, depth: number, out: string[]): void {
  const indent = '  '.repeat(depth);
  const bits = [node.type];
  if (node.required === false) bits.push('optional');
  const def = formatDefault(node);
  if (def) bits.push(`default ${def}`);
  out.push(`${indent}- \`${name}\` (${bits.join(', ')})${node.description ? `: ${node.description.replace(/\s+/g, ' ')}` : ''}`);
  const fields = node.fields ?? node.items?.fields;
  if (fields) {
    const label = node.fields ? null : node.type.startsWith('mapping of name') ? 'NAME' : '[]';
    for (const [key, child] of Object.entries(fields)) render(label === null ? key : label === 'NAME' ? `NAME.${key}` : `[].${key}`, child, depth + 1, out);
  }
}

export function renderPolicyReference(): string {
  const root = getPolicySchema().doc();
  const out = [
    '# Policy reference',
    '',
    'Generated from the schemas by `npm run docs:reference` (a test fails when this file is out of date).',
    'Durations are written `500ms`, `2s`, `1m`, `1h`, `7d`; sizes `512`, `64KiB`, `10MiB`. Every string may',
    'use `${env:NAME}`, `${env:NAME:-default}` and `${file:PATH}`. See docs/policy.md for what each part does.',
    '',
  ];
  for (const [key, node] of Object.entries(root.fields ?? {})) {
    out.push(`## \`${key}\``, '');
    render(key, node, 0, out);
    out.push('');
  }
  return out.join('\n');
}
