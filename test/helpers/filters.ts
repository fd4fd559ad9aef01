// Compiles policy text the way the gateway does and drives one route's chain with a hand-made request
// context: for filter tests that assert compile output and verdicts without a process.
import { compileText, type CompiledPolicy, type CompiledRoute } from '../../src/policy/compile.ts';
import { PolicyError } from '../../src/config/errors.ts';
import { runChain } from '../../src/filters/chain.ts';
import type { Deny } from '../../src/contract/filter.ts';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { RequestContext, type HeaderMap, type ResponseHead } from '../../src/contract/context.ts';

const telemetry = quietTelemetry(new Metrics({ defaultMetrics: false }));

export const BASE = `version: 1
listeners:
  - address: 127.0.0.1:0
upstreams:
  app: { url: "http://127.0.0.1:3000" }
`;

export function compile(text: string, env: NodeJS.ProcessEnv = {}): CompiledPolicy {
  return compileText(text, 'policy.yaml', { telemetry }, env);
}

/** The problems a policy has, as `FILE:LINE:COLUMN: message` lines; [] when it compiles. */
export function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    void compile(text, env).close();
  } catch (err) {
    if (err instanceof PolicyError) return err.message.split('\n');
    throw err;
  }
  return [];
}

export function route(policy: CompiledPolicy, name: string): CompiledRoute {
  const r = policy.routes.find((x) => x.name === name);
  if (!r) throw new Error(`no route ${name}`);
  return r;
}

export function context(method: string, headers: Record<string, string> = {}, opts: { scheme?: 'http' | 'https'; authority?: string; path?: string } = {}): RequestContext {
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  const ctx = new RequestContext(method, '1.1', lower, '127.0.0.1', opts.scheme ?? 'http', 0);
  ctx.authority = opts.authority ?? 'api.example.com';
  ctx.host = ctx.authority.replace(/:\d+$/, '');
  ctx.path = opts.path ?? '/';
  ctx.upstreamHeaders = { ...lower };
  return ctx;
}

/** Runs the route's request chain synchronously. */
export function verdict(r: CompiledRoute, ctx: RequestContext): Deny | undefined {
  if (r.request === null) return undefined;
  const v = runChain(r.request, r.requestNames, ctx);
  if (v instanceof Promise) throw new Error('unexpected async filter');
  return v;
}

/** What the gateway does with a response head: request-phase headers merged, then the response hooks. */
export function respond(r: CompiledRoute, ctx: RequestContext, status: number, headers: HeaderMap = {}): ResponseHead {
  const head: ResponseHead = { status, headers: { ...headers } };
  for (const name in ctx.responseHeaders) head.headers[name] = ctx.responseHeaders[name];
  if (r.response !== null) for (const hook of r.response) hook(ctx, head);
  return head;
}
