// JWKS from a local file (issue 15 item 4): the key set of a mounted Secret or ConfigMap, re-read when
// Kubernetes swaps the file (an atomic rename, as its symlink swap is), the last good set kept when a new
// file is broken, and a missing file at start is a policy error with its position.
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, tempDir, waitFor, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { signWith } from '../helpers/identity.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

interface Pair { kid: string; privateKey: KeyObject; jwk: Record<string, unknown> }
function ecKey(kid: string): Pair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } };
}
const k1 = ecKey('k1');
const k2 = ecKey('k2');
const token = (p: Pair) => signWith(p.privateKey, 'ES256', { sub: 'alice', jti: randomUUID() }, { kid: p.kid });

const dir = tempDir('portcullis-jwks-file-');
const jwksFile = join(dir, 'jwks.json');
/** Writes the file the way Kubernetes updates a volume: a new file renamed over the old one. */
function publish(text: string): void {
  const next = join(dir, `.next-${randomUUID()}`);
  writeFileSync(next, text);
  renameSync(next, jwksFile);
}

let upstream: RecordingUpstream;
let gw: RunningGateway;

const policy = (file: string) => `version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { url: "${upstream.url}" } }
auth:
  default: files
  providers:
    files:
      jwt:
        algorithms: [ES256]
        jwks_file: ${file}
routes:
  - { match: { path_prefix: /api }, upstream: app }
`;

async function call(t: string): Promise<{ status: number; reason?: string }> {
  const r = await fetch(`${gw.url}/api/x`, { headers: { authorization: `Bearer ${t}` } });
  const body = await r.text();
  return { status: r.status, reason: r.status === 200 ? undefined : (JSON.parse(body) as { reason: string }).reason };
}

beforeAll(async () => {
  upstream = await startUpstream();
  publish(JSON.stringify({ keys: [k1.jwk] }));
  gw = await startGateway(policy(jwksFile));
});

afterAll(async () => {
  expect(await gw?.stop()).toBe(0);
  await upstream?.close();
});

describe('jwks_file', () => {
  it('verifies with the keys of the file, and follows a swap of the file without a restart', async () => {
    expect(await call(await token(k1))).toEqual({ status: 200, reason: undefined });
    expect(await call(await token(k2))).toEqual({ status: 401, reason: 'token_key_unknown' });
    upstream.received.length = 0;
    publish(JSON.stringify({ keys: [k2.jwk] }));
    await waitFor(async () => (await call(await token(k2))).status === 200, 10_000);
    expect(await call(await token(k1))).toEqual({ status: 401, reason: 'token_key_unknown' }); // removed key: refused at once (cache cleared)
    expect(gw.stderr()).toContain('JWKS file changed');
  });

  it('keeps the last good set when the new file is broken, and says why', async () => {
    const good = await token(k2);
    publish('{ "keys": [ not json');
    await waitFor(() => gw.stderr().includes('JWKS file unusable'), 10_000);
    expect(await call(good)).toEqual({ status: 200, reason: undefined });
    publish(JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] })); // no usable key: kept as well
    await waitFor(() => gw.stderr().includes("no key usable with the provider's algorithms"), 10_000);
    expect(await call(await token(k2))).toEqual({ status: 200, reason: undefined });
    publish(JSON.stringify({ keys: [k1.jwk, k2.jwk] }));
    await waitFor(async () => (await call(await token(k1))).status === 200, 10_000);
  });

  it('a missing file, or jwks_file beside jwks_url, is a policy error at its line', async () => {
    const missing = writePolicy(policy(join(dir, 'nowhere.json')));
    const r = await runCli(['validate', missing]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`:11:\\d+: .*cannot read .*nowhere\\.json: ENOENT`));
    const both = writePolicy(policy(jwksFile).replace('jwks_file:', 'jwks_url: https://idp.example/jwks\n        jwks_file:'));
    const r2 = await runCli(['validate', both]);
    expect(r2.stdout + r2.stderr).toMatch(/give "jwks_url" or "jwks_file", not both/);
  });
});
