// `portcullis explain FILE [METHOD URL [-H 'Name: value']...]`: the compiled routes and filter chains, or
// the route, chain and filter decisions one request gets. The work is src/server/explain.ts (the admin
// dashboard's explain form answers with the same function); output passes the secret mask.
import { loadAndCompile, type CompiledPolicy } from '../policy/compile.ts';
import { Metrics } from '../observability/metrics.ts';
import { explainPolicy, explainRequest } from '../server/explain.ts';
import { quietTelemetry } from './quiet-telemetry.ts';

/** `Name: value` pairs (curl's -H) into a header record; a line without a colon is an error. */
export function parseHeaderArgs(lines: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new TypeError(`header "${line}": expected "Name: value"`);
    out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

export async function explain(file: string, method?: string, url?: string, headers: Record<string, string> = {}, clientIp?: string): Promise<string> {
  const policy: CompiledPolicy = loadAndCompile(file, { telemetry: quietTelemetry(new Metrics({ defaultMetrics: false })) });
  try {
    let out: unknown;
    if (method === undefined || url === undefined) out = explainPolicy(policy);
    else {
      // Filters decide as the running gateway would: with its key sets loaded (first JWKS fetch).
      await policy.ready;
      out = await explainRequest(policy, { method, url, headers, ...(clientIp !== undefined ? { clientIp } : {}) });
    }
    return policy.source.secrets.mask(JSON.stringify(out, null, 2)) + '\n';
  } finally {
    await policy.close();
  }
}
