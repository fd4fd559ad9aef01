// Reads the Dockerfile with a real Dockerfile parser (dockerfile-ast) into plain stages the tests can check
// and replay; and reads .dockerignore the way the Docker CLI does (last matching pattern wins, `!` re-admits).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { ROOT } from '../helpers/gateway.ts';

export interface Step {
  keyword: string;
  args: string[];
  flags: Record<string, string>;
  /** The instruction's text after the keyword, continuation lines joined. */
  content: string;
  line: number;
}

export interface Stage {
  image: string;
  tag: string | null;
  digest: string | null;
  name: string | null;
  steps: Step[];
}

export function readDockerfile(file = join(ROOT, 'Dockerfile')): { text: string; stages: Stage[]; all: Step[] } {
  const text = readFileSync(file, 'utf8');
  const df = DockerfileParser.parse(text);
  const stages: Stage[] = [];
  const all: Step[] = [];
  for (const i of df.getInstructions()) {
    const step = toStep(i);
    all.push(step);
    if (step.keyword === 'FROM') {
      const from = df.getFROMs().find((f) => f.getRange().start.line === i.getRange().start.line)!;
      stages.push({ image: from.getImageName() ?? '', tag: from.getImageTag(), digest: from.getImageDigest(), name: from.getBuildStage(), steps: [] });
      continue;
    }
    stages.at(-1)?.steps.push(step);
  }
  return { text, stages, all };
}

function toStep(i: Instruction): Step {
  const flags: Record<string, string> = {};
  const withFlags = i as Instruction & { getFlags?: () => { getName(): string; getValue(): string | null }[] };
  for (const f of withFlags.getFlags?.() ?? []) flags[f.getName()] = f.getValue() ?? '';
  const content = (i.getArgumentsContent() ?? '').replace(/\\\r?\n\s*/g, ' ');
  return { keyword: i.getKeyword().toUpperCase(), args: i.getArguments().map((a) => a.getValue()), flags, content, line: i.getRange().start.line + 1 };
}

/** The JSON (exec) form of an instruction's arguments, or null when it is the shell form. */
export function execForm(step: Step): string[] | null {
  const text = step.content.replace(/^(--\S+\s+)*/, '').replace(/^CMD\s+/, '').trim();
  if (!text.startsWith('[')) return null;
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : null;
  } catch {
    return null;
  }
}

/** `.dockerignore` semantics: patterns in order, the last that matches decides; `!` re-includes. */
export function dockerignore(file = join(ROOT, '.dockerignore')): (path: string) => boolean {
  const rules = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      const re = new RegExp(
        '^' +
          pattern
            .split('**')
            .map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))
            .join('.*') +
          '(/.*)?$',
      );
      return { negate, re };
    });
  return (path: string) => {
    let excluded = false;
    for (const r of rules) if (r.re.test(path)) excluded = !r.negate;
    return excluded;
  };
}
