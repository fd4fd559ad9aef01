// Helpers for identity tests: compile a policy in-process and run requests through its chains
// (simulateRequest, the same code `portcullis test` uses), and craft tokens, forged ones included.
import { generateKeyPairSync, createHmac, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { compileText, type CompiledPolicy } from '../../src/policy/compile.ts';
import { quietTelemetry } from '../../src/cli/quiet-telemetry.ts';
import { simulateRequest, type Outcome, type SimulatedRequest } from '../../src/cli/policy-test.ts';
import { Metrics } from '../../src/observability/metrics.ts';

export const SECRET = 'd3b07384d113edec49eaa6238ad5ff00c86a1d07f6f2b5a6e0b1d6c1f0a9e8b7';
export const OTHER_SECRET = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';

export interface Compiled {
  policy: CompiledPolicy;
  metrics: Metrics;
  run(req: SimulatedRequest | string, headers?: Record<string, string>): Promise<Outcome>;
  counter(name: string, labels: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function compile(text: string, env: Record<string, string> = {}): Promise<Compiled> {
  const metrics = new Metrics({ defaultMetrics: false });
  const policy = compileText(text, 'policy.yaml', { telemetry: quietTelemetry(metrics) }, { ...env });
  await policy.ready;
  return {
    policy,
    metrics,
    run: (req, headers) => simulateRequest(policy, typeof req === 'string' ? { path: req, headers } : req),
    counter: (name, labels) => counterValue(metrics, name, labels),
    close: () => policy.close(),
  };
}

export async function counterValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  return data.values.filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val)).reduce((a, v) => a + v.value, 0);
}

export const now = () => Math.floor(Date.now() / 1000);

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export async function hs256(claims: Record<string, unknown>, options: { secret?: string; kid?: string; alg?: string; header?: Record<string, unknown> } = {}): Promise<string> {
  const c = { iat: now(), exp: now() + 600, ...claims };
  for (const k of Object.keys(c)) if ((c as Record<string, unknown>)[k] === undefined) delete (c as Record<string, unknown>)[k];
  return new SignJWT(c)
    .setProtectedHeader({ alg: options.alg ?? 'HS256', ...(options.kid ? { kid: options.kid } : {}), ...(options.header ?? {}) })
    .sign(Buffer.from(options.secret ?? SECRET));
}

export async function signWith(key: KeyObject, alg: string, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const c = { iat: now(), exp: now() + 600, ...claims };
  return new SignJWT(c).setProtectedHeader({ alg, ...header }).sign(key);
}

const b64 = (v: string | Buffer) => Buffer.from(v).toString('base64url');

/** A token built by hand: any header, any payload text (duplicate keys...), HMAC-signed with `secret` or with the given signature. */
export function rawToken(headerJson: string, payloadJson: string, sign: { secret?: string | Buffer; signature?: string } = { secret: SECRET }): string {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`;
  const sig = sign.signature !== undefined ? sign.signature : createHmac('sha256', sign.secret ?? SECRET).update(input).digest('base64url');
  return `${input}.${sig}`;
}

export function rsaPair(): { publicKey: KeyObject; privateKey: KeyObject; publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { publicKey, privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string, privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** YAML for a block scalar at `indent` spaces. */
export function block(text: string, indent: number): string {
  return '|\n' + text.trimEnd().split('\n').map((l) => ' '.repeat(indent) + l).join('\n');
}
