// Reads a policy file: YAML with source positions, `${env:NAME}` and `${file:PATH}` substitutions, and the
// mapping from a value's path back to FILE:LINE:COLUMN for every error message.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { PolicyError, type PolicyProblem } from './errors.ts';
import type { Issue, Path } from './schema.ts';
import { SecretRegistry } from './secrets.ts';

export interface LoadedSource {
  file: string;
  /** The policy as written (substitutions resolved), a plain JS value. */
  value: unknown;
  /** The policy as written, before substitutions: what `explain` may show. */
  written: unknown;
  secrets: SecretRegistry;
  locate(issue: Pick<Issue, 'path' | 'atKey'>): { line: number; column: number };
  problem(issue: Issue): PolicyProblem;
}

const SUBSTITUTION = /\$\{(env|file):([^}]*)\}/g;
// Keys whose substituted values are secrets: never printed, redacted from every log line.
const SECRET_KEY = /(secret|password|passwd|token|key|credential|private|auth|cookie)/i;

export function loadPolicySource(file: string, env: NodeJS.ProcessEnv = process.env): LoadedSource {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PolicyError([{ file, line: 0, column: 0, message: `cannot read policy file: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
  }
  return parsePolicySource(text, file, env);
}

export function parsePolicySource(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadedSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const problems: PolicyProblem[] = [];
  const at = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  for (const err of doc.errors) {
    problems.push({ file, ...at(err.pos[0]), message: `YAML: ${err.message.split('\n')[0]}` });
  }
  if (problems.length) throw new PolicyError(problems);

  const written: unknown = doc.toJS({ maxAliasCount: 100 });
  const secrets = new SecretRegistry();
  const baseDir = dirname(resolve(file));
  const locate = (issue: Pick<Issue, 'path' | 'atKey'>) => at(offsetOf(doc, issue.path, issue.atKey === true));

  const substitutionProblems: Issue[] = [];
  const value = substitute(written, [], env, baseDir, secrets, substitutionProblems);
  if (substitutionProblems.length) {
    throw new PolicyError(substitutionProblems.map((i) => ({ file, ...locate(i), message: i.message })));
  }
  return {
    file,
    value,
    written,
    secrets,
    locate,
    problem: (issue) => ({ file, ...locate(issue), message: issue.message }),
  };
}

function substitute(
  value: unknown,
  path: Path,
  env: NodeJS.ProcessEnv,
  baseDir: string,
  secrets: SecretRegistry,
  issues: Issue[],
): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    const keyName = [...path].reverse().find((p) => typeof p === 'string') ?? '';
    const secretish = SECRET_KEY.test(String(keyName));
    const out = value.replace(SUBSTITUTION, (_whole, kind: string, ref: string) => {
      if (kind === 'env') {
        // `${env:NAME:-default}`: the default when NAME is unset or empty (an app's own default, e.g. `local`).
        const dash = ref.indexOf(':-');
        const fallback = dash === -1 ? undefined : ref.slice(dash + 2);
        if (dash !== -1) ref = ref.slice(0, dash);
        const v = env[ref] === undefined || env[ref] === '' ? fallback : env[ref];
        if (v === undefined || v === '') {
          issues.push({ path, message: `environment variable ${ref} is not set (referenced as \${env:${ref}})` });
          return '';
        }
        if (secretish) secrets.add(v);
        return v;
      }
      try {
        // Files hold secrets by convention (Kubernetes Secret mounts); strip the trailing newline editors add.
        const v = readFileSync(resolve(baseDir, ref), 'utf8').replace(/\r?\n$/, '');
        secrets.add(v);
        return v;
      } catch (err) {
        issues.push({ path, message: `cannot read file ${ref} (referenced as \${file:${ref}}): ${(err as NodeJS.ErrnoException).code ?? 'error'}` });
        return '';
      }
    });
    // A URL with credentials (redis://:password@host) keeps its password secret wherever it came from.
    const credentials = /^[a-z][a-z0-9+.-]*:\/\/([^/@]*)@/i.exec(out);
    if (credentials && credentials[1]) {
      const pass = credentials[1].includes(':') ? credentials[1].slice(credentials[1].indexOf(':') + 1) : credentials[1];
      if (pass) secrets.add(decodeURIComponentSafe(pass));
    }
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, [...path, i], env, baseDir, secrets, issues));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, [...path, k], env, baseDir, secrets, issues);
    return out;
  }
  return value;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The source offset of the node at `path` (or of its key), falling back to the nearest ancestor. */
function offsetOf(doc: Document, path: Path, atKey: boolean): number {
  let node: unknown = doc.contents;
  let best = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return best;
      const keyNode = pair.key as Node;
      if (last && atKey) return keyNode.range?.[0] ?? best;
      node = pair.value;
      best = (pair.value as Node | null)?.range?.[0] ?? keyNode.range?.[0] ?? best;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item) return best;
      node = item;
      best = item.range?.[0] ?? best;
    } else {
      return best;
    }
  }
  return best;
}
