// `portcullis validate FILE [--production]`: every problem as FILE:LINE:COLUMN: message, exit 1 on any.
// With --production the same problems `mode: production` refuses at start are printed as a deployment
// checklist: one unchecked box per item, all of them at once, in file order.
import { loadAndCompile } from '../config/compile.ts';
import { formatProblem, PolicyError } from '../config/errors.ts';
import { Metrics } from '../observability/metrics.ts';
import { quietTelemetry } from './quiet-telemetry.ts';

export function validate(file: string, production: boolean): { ok: boolean; output: string } {
  try {
    const policy = loadAndCompile(file, { telemetry: quietTelemetry(new Metrics({ defaultMetrics: false })), production });
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
