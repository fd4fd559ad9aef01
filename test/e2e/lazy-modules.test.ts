// What a running gateway has loaded: the features a policy does not use must cost it no memory. A plain
// passthrough must not load jose, ioredis, all of undici (fetch, Agent), OpenTelemetry's SDK, or Node's
// bundled undici (which an ES-module import of node:http pulls in through its WebSocket getter; see
// src/proxy/node-http.ts); a policy with JWT and a Redis limit loads what it needs.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startGateway, tempDir, waitFor } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** Preloaded into the gateway: on SIGUSR2, writes the node: modules and the files it loaded to `out`. */
function reporter(dir: string): { file: string; out: string } {
  const out = join(dir, 'loaded.json');
  const file = join(dir, 'reporter.mjs');
  writeFileSync(
    file,
    `import { registerHooks } from 'node:module';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const files = new Set();
registerHooks({ load(url, context, next) { files.add(url); return next(url, context); } });
process.on('SIGUSR2', () => writeFileSync(${JSON.stringify(out)}, JSON.stringify({ native: process.moduleLoadList, files: [...files] })));
`,
  );
  return { file, out };
}

async function loadedBy(policy: string, env: Record<string, string> = {}): Promise<{ native: string[]; packages: Set<string> }> {
  const dir = tempDir();
  const { file, out } = reporter(dir);
  const gw = await startGateway(policy, { env: { ...env, NODE_OPTIONS: `--import=${file}` } });
  cleanup.push(() => gw.stop());
  const answer = await fetch(gw.url + '/x', { headers: { authorization: `Bearer ${TOKEN}` } });
  await answer.arrayBuffer();
  gw.proc.kill('SIGUSR2');
  await waitFor(() => existsSync(out));
  const loaded = JSON.parse(readFileSync(out, 'utf8')) as { native: string[]; files: string[] };
  const packages = new Set(loaded.files.map((u) => /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(u)).filter((m) => m !== null).map((m) => (m[1] === 'undici' && m[2] === 'index.js' ? 'undici (index)' : m[1]!)));
  return { native: loaded.native, packages };
}

// An HS256 token for the JWT policy; the passthrough forwards it untouched.
const KEY = 'a-test-key-that-is-long-enough-for-hs256!';
let TOKEN = '';

function policy(upstream: RecordingUpstream, route = '', top = ''): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
${top}
upstreams:
  app: { url: "${upstream.url}" }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: app
${route}`;
}

describe('modules a running gateway loads', () => {
  it('a passthrough loads no JWT, Redis, fetch or tracing code; a JWT + Redis policy loads jose and ioredis', async () => {
    const { SignJWT } = await import('jose');
    TOKEN = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setExpirationTime('1h').sign(new TextEncoder().encode(KEY));
    const upstream = await startUpstream();
    cleanup.push(() => upstream.close());

    const plain = await loadedBy(policy(upstream));
    expect(upstream.received.some((r) => r.url === '/x')).toBe(true);
    expect(plain.native).not.toContain('NativeModule internal/deps/undici/undici');
    for (const p of ['jose', 'ioredis', 'undici (index)', '@opentelemetry/sdk-node', '@opentelemetry/sdk-trace', 'openid-client']) expect([...plain.packages]).not.toContain(p);
    expect(plain.packages).toContain('undici'); // its pool and connector, the forwarding path

    const guarded = await loadedBy(
      policy(upstream, '    rate_limit: [per_user]', `auth:
  default: main
  providers:
    main:
      jwt:
        algorithms: [HS256]
        keys: [{ kid: k1, secret: "\${env:JWT_SECRET}" }]
rate_limits:
  store: { redis: "${process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'}", key_prefix: "lazy-modules-test:", command_timeout: 2s }
  per_user: { key: claim:sub, limit: 1000, window: 1h }`),
      { JWT_SECRET: KEY },
    );
    expect(guarded.packages).toContain('jose');
    expect(guarded.packages).toContain('ioredis');
  });
});
