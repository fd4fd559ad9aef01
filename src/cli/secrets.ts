// `portcullis secrets generate [--name NAME]... [--k8s SECRET_NAME [--namespace NS]] [--apply]`: fresh
// 256-bit secrets as NAME=value lines, or as a Kubernetes Secret manifest, or applied with kubectl.
// `portcullis secrets generate --api-key SUBJECT`: a new 256-bit API key, printed once, and the key-file
// entry that holds only its SHA-256.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { API_KEY_PREFIX, hashApiKey } from '../filters/api-key.ts';

export const DEFAULT_SECRET_NAMES = ['JWT_SECRET'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** 256 random bits, hex-encoded (64 characters), like `openssl rand -hex 32`. */
export function freshSecret(): string {
  return randomBytes(32).toString('hex');
}

export function generateSecrets(names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    if (!ENV_NAME.test(n)) throw new Error(`invalid secret name "${n}": use letters, digits and _`);
    out[n] = freshSecret();
  }
  return out;
}

export function envLines(values: Record<string, string>): string {
  return Object.entries(values).map(([k, v]) => `${k}=${v}\n`).join('');
}

/** A Kubernetes Secret manifest (JSON is valid YAML and needs no escaping rules). */
export function k8sManifest(name: string, values: Record<string, string>, namespace?: string): string {
  if (!K8S_NAME.test(name)) throw new Error(`invalid Kubernetes name "${name}"`);
  const manifest = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, ...(namespace ? { namespace } : {}), labels: { 'app.kubernetes.io/managed-by': 'portcullis' } },
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
  return JSON.stringify(manifest, null, 2) + '\n';
}

/** Pipes the manifest to `kubectl apply -f -`; resolves with kubectl's output, rejects on failure. */
export function kubectlApply(manifest: string, kubectl = process.env.KUBECTL ?? 'kubectl'): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(kubectl, ['apply', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    proc.on('error', (e) => reject(new Error(`cannot run ${kubectl}: ${e.message}`)));
    proc.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl apply failed (exit ${code}): ${err.trim()}`))));
    proc.stdin.end(manifest);
  });
}

export interface SecretsArgs {
  name?: string[];
  k8s?: string;
  namespace?: string;
  apply?: boolean;
  'api-key'?: string;
  id?: string;
  role?: string[];
  scope?: string[];
}

const KEY_ID = /^[A-Za-z0-9_.:@-]{1,64}$/;

/** A fresh API key (prefix + 256 random bits, base64url) and the key-file entry for it. */
export function generateApiKey(subject: string, options: { id?: string; roles?: readonly string[]; scopes?: readonly string[] } = {}): { key: string; entry: string } {
  if (subject.trim() === '' || /[\x00-\x1f\x7f]/.test(subject)) throw new Error('--api-key needs a subject (no control characters)');
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  const sha256 = hashApiKey(key);
  const id = options.id ?? `${subject.replace(/[^A-Za-z0-9_.:@-]/g, '-').slice(0, 40)}-${new Date().toISOString().slice(0, 10)}-${sha256.slice(0, 6)}`;
  if (!KEY_ID.test(id)) throw new Error(`invalid key id "${id}": letters, digits, _ . : @ - (at most 64)`);
  const fields = [`id: ${JSON.stringify(id)}`, `sha256: ${sha256}`, `subject: ${JSON.stringify(subject)}`];
  if (options.roles?.length) fields.push(`roles: ${JSON.stringify(options.roles)}`);
  if (options.scopes?.length) fields.push(`scopes: ${JSON.stringify(options.scopes)}`);
  return { key, entry: `  - { ${fields.join(', ')} }` };
}

export async function secretsCommand(sub: string | undefined, args: SecretsArgs): Promise<string> {
  if (sub !== 'generate') throw new Error('usage: portcullis secrets generate [--name NAME]... [--k8s SECRET_NAME [--namespace NS]] [--apply] | --api-key SUBJECT [--id ID] [--role R]... [--scope S]...');
  if (args['api-key'] !== undefined) {
    if (args.k8s !== undefined || args.name?.length) throw new Error('--api-key does not go with --name or --k8s');
    const { key, entry } = generateApiKey(args['api-key'], { id: args.id, roles: args.role, scopes: args.scope });
    return `# API key for ${JSON.stringify(args['api-key'])}: shown once, store it now (the gateway keeps only its hash).\n` +
      `API_KEY=${key}\n` +
      `# Add this line under "keys:" in the provider's keys_file (re-read without restart):\n${entry}\n`;
  }
  if (args.apply && args.k8s === undefined) throw new Error('--apply needs --k8s SECRET_NAME');
  const values = generateSecrets(args.name?.length ? args.name : DEFAULT_SECRET_NAMES);
  if (args.k8s === undefined) return envLines(values);
  const manifest = k8sManifest(args.k8s, values, args.namespace);
  if (!args.apply) return manifest;
  return kubectlApply(manifest);
}
