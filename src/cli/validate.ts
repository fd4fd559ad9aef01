// `portcullis validate FILE [--production]`: every problem as FILE:LINE:COLUMN: message, exit 1 on any.
// With --production the same problems `mode: production` refuses at start are printed as a deployment
// checklist: one unchecked box per item, all of them at once, in file order.
import { randomBytes } from 'node:crypto';
import { loadAndCompile, type CompiledPolicy } from '../policy/compile.ts';
import { formatProblem, PolicyError } from '../config/errors.ts';
import { Metrics } from '../observability/metrics.ts';
import { quietTelemetry } from './quiet-telemetry.ts';

export function validate(file: string, production: boolean): { ok: boolean; output: string } {
  try {
    const policy = compileCollecting(file, production);
    void policy.close();
    const summary = `${file}: ok, ${policy.routes.length} route(s), policy hash ${policy.hash}`;
    if (production) return { ok: true, output: `${summary}\nproduction checklist: nothing missing, ready to deploy\n` };
    const note = policy.mode === 'development' ? ' (development mode: not checked for production; use --production)' : '';
    return { ok: true, output: `${summary}${note}\n` };
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    if (production) return { ok: false, output: checklist(file, err) };
    return { ok: false, output: `${err.message}\n${file}: ${err.problems.length} problem(s)\n` };
  }
}

/** Every problem as a checklist item; `production:` items are deployment work, the others policy errors. */
function checklist(file: string, err: PolicyError): string {
  const n = err.problems.length;
  const lines = [`production checklist for ${file}: ${n} item(s) to fix before deploying`];
  for (const p of err.problems) {
    const message = p.message.replace(/^production: /, '');
    lines.push(`  [ ] ${formatProblem({ ...p, message })}`);
  }
  lines.push(`${file}: ${n} problem(s) (with the production checklist); the gateway refuses to start in production mode until each is fixed`);
  return lines.join('\n') + '\n';
}

const UNSET = /^environment variable (\S+) is not set/;

/**
 * Compiles, and when variables are missing, compiles again with stand-ins for them, so one run names every
 * problem: the missing secrets and everything else (substitution happens before validation otherwise).
 * Stand-ins are URL-shaped strings with 256 random bits, never reported themselves. Throws a PolicyError with them all.
 */
export function compileCollecting(file: string, production: boolean, env: NodeJS.ProcessEnv = process.env): CompiledPolicy {
  const options = () => ({ telemetry: quietTelemetry(new Metrics({ defaultMetrics: false })), production });
  try {
    return loadAndCompile(file, options(), env);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    const missing = err.problems.map((p) => UNSET.exec(p.message)?.[1]).filter((n): n is string => n !== undefined);
    if (missing.length === 0 || missing.length !== err.problems.length) throw err;
    const standIns: NodeJS.ProcessEnv = { ...env };
    // A stand-in that parses as a URL and carries 256 random bits, so it passes as most values would.
    for (const name of missing) standIns[name] = `http://stand-in.invalid/${randomBytes(32).toString('hex')}`;
    let rest: readonly PolicyError['problems'][number][] = [];
    try {
      void loadAndCompile(file, options(), standIns).close();
    } catch (again) {
      if (!(again instanceof PolicyError)) throw err;
      // What is said about a stand-in's own position is noise: that value is already reported as missing.
      const at = new Set(err.problems.map((p) => `${p.line}:${p.column}`));
      rest = again.problems.filter((p) => !at.has(`${p.line}:${p.column}`));
    }
    const problems = [...err.problems, ...rest];
    problems.sort((a, b) => a.line - b.line || a.column - b.column);
    throw new PolicyError(problems);
  }
}
