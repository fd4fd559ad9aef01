// `portcullis validate FILE [--production]`: every problem as FILE:LINE:COLUMN: message, exit 1 on any.
import { loadAndCompile } from '../config/compile.ts';
import { PolicyError } from '../config/errors.ts';
import { Metrics } from '../observability/metrics.ts';
import { quietTelemetry } from './quiet-telemetry.ts';

export function validate(file: string, production: boolean): { ok: boolean; output: string } {
  try {
    const policy = loadAndCompile(file, { telemetry: quietTelemetry(new Metrics({ defaultMetrics: false })), production });
    void policy.close();
    const checklist = production ? ' (production checklist passed)' : policy.mode === 'development' ? ' (development mode: not checked for production; use --production)' : '';
    return { ok: true, output: `${file}: ok, ${policy.routes.length} route(s), policy hash ${policy.hash}${checklist}\n` };
  } catch (err) {
    if (err instanceof PolicyError) {
      return { ok: false, output: `${err.message}\n${file}: ${err.problems.length} problem(s)${production ? ' (with the production checklist)' : ''}\n` };
    }
    throw err;
  }
}
