// Shared by the browser-protection modules: a route names a top-level policy (`cors: web`), writes one
// inline (`cors: { origins: [...] }`), or turns it off (`cors: none`). Resolved once at compile time.
import { either, record, string, type Path, type Schema } from '../config/schema.ts';
import type { CompileEnv } from '../contract/filter.ts';

const POLICY_NAME = /^[A-Za-z0-9_.-]+$/;

/** Top-level `key: { name: {...}, ... }`. */
export function namedPolicies<T>(item: Schema<T>, description: string): Schema<Record<string, T>> {
  return record(item, { keyPattern: POLICY_NAME, description });
}

/** Route-level `key: NAME | none | {inline}`. */
export function policyRef<T>(item: Schema<T>, description: string): Schema<string | T> {
  return either(
    string({ pattern: POLICY_NAME, patternName: 'policy name', description: 'Name of a top-level policy, or none.' }),
    item,
    { description },
  );
}

/**
 * Resolves a route's reference. `compiled` holds the named policies compiled once in `setup`; an inline
 * policy is compiled here, for this route. Returns null for `none` and for an unknown name (reported).
 */
export function resolveRef<T, C>(
  value: string | T | undefined,
  compiled: ReadonlyMap<string, C>,
  compileInline: (config: T, path: Path) => C,
  path: Path,
  env: CompileEnv,
  what: string,
): C | null {
  if (value === undefined) return null;
  if (typeof value === 'string') {
    if (value === 'none') return null;
    const found = compiled.get(value);
    if (found === undefined) {
      const known = [...compiled.keys()];
      env.problem(path, `unknown ${what} policy "${value}"${known.length ? ` (defined: ${known.join(', ')})` : ` (no ${what} policies are defined)`}`);
      return null;
    }
    return found;
  }
  return compileInline(value, path);
}
