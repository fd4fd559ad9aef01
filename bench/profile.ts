// `node bench/profile.ts [passthrough|full-policy] [seconds]`: a CPU profile of the gateway under load,
// summarized by self time (the flat view of a flame graph) and by where the time goes (our code, undici,
// node:http, the logger, metrics, jose, ioredis, GC). The .cpuprofile is kept for a flame-graph viewer
// (Chrome DevTools, speedscope). Same pinning as bench/run.ts: gateway on core 0, load and upstream on 1.
import autocannon from 'autocannon';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildGateway, GATEWAY_ENTRY, GATEWAY_RUNTIME } from './harness.ts';
import { mint } from './jwt-fixtures.ts';
import { passthroughPolicy } from './policy.ts';
import { fullPolicy } from './scenarios/full-policy.ts';

const ROOT = resolve(import.meta.dirname, '..');
const which = process.argv[2] ?? 'passthrough';
const seconds = Number(process.argv[3] ?? '10');
const dir = mkdtempSync(join(tmpdir(), 'portcullis-profile-'));
const taskset = (() => { try { execFileSync('taskset', ['-V'], { stdio: 'ignore' }); return true; } catch { return false; } })();
if (taskset) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });

const freePort = () => new Promise<number>((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address() as AddressInfo; s.close(() => res(port)); }); });

// A small upstream in this process (core 1): 100 bytes, keep-alive.
const body = 'x'.repeat(100);
const upstream = createHttpServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' }); res.end(body); });
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

const port = await freePort();
const admin = await freePort();
const text = (which === 'full-policy' ? fullPolicy(upstreamUrl, 'redis://127.0.0.1:6379', dir) : passthroughPolicy(upstreamUrl))
  .replaceAll('${LISTEN}', `127.0.0.1:${port}`).replaceAll('${ADMIN}', `127.0.0.1:${admin}`);
const policyFile = join(dir, 'policy.yaml');
writeFileSync(policyFile, text);
buildGateway();
const argv = ['--cpu-prof', '--cpu-prof-dir', dir, ...GATEWAY_RUNTIME.flags, GATEWAY_ENTRY, 'start', '--config', policyFile];
const gw = spawn(taskset ? 'taskset' : process.execPath, taskset ? ['-c', '0', process.execPath, ...argv] : argv, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...GATEWAY_RUNTIME.env, OTEL_EXPORTER_OTLP_ENDPOINT: '' } });
for (let i = 0; i < 200; i++) {
  const up = await fetch(`http://127.0.0.1:${port}/`).then(() => true, () => false);
  if (up) break;
  await new Promise((r) => setTimeout(r, 50));
}
const headers: Record<string, string> = which === 'full-policy' ? { authorization: `Bearer ${await mint('HS256', 'alice')}`, origin: 'https://app.example.com' } : {};
await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 64, duration: 2, headers });
const r = await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 64, duration: seconds, headers });
const exited = new Promise((res) => gw.once('exit', res));
gw.kill('SIGTERM');
await exited;
upstream.close();

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!;
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map<string, number>();
const byArea = new Map<string, number>();
const area = (url: string, fn: string): string => {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)' || fn === '(program)') return fn;
  if (url.includes('/dist/')) return 'portcullis ' + url.slice(url.indexOf('/dist/') + 6).split('/')[0];
  for (const lib of ['undici', 'pino', 'prom-client', 'jose', 'ioredis', 'sonic-boom']) if (url.includes(`/node_modules/${lib}/`)) return lib;
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:').split('/').slice(0, 2).join('/');
  return url === '' ? '(native)' : 'other';
};
for (const n of profile.nodes) {
  const t = self.get(n.id) ?? 0;
  if (t === 0) continue;
  const short = n.callFrame.url.replace(/^.*\/(src|node_modules)\//, '$1/');
  const key = `${n.callFrame.functionName || '(anonymous)'} ${short}:${n.callFrame.lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + t);
  const a = area(n.callFrame.url, n.callFrame.functionName);
  byArea.set(a, (byArea.get(a) ?? 0) + t);
}
const pct = (t: number) => `${((100 * t) / total).toFixed(1)}%`;
const lines = [
  `# CPU profile: ${which}, ${seconds} s, ${Math.round(r.requests.average)} req/s (p99 ${r.latency.p99} ms)`,
  '',
  '## By area (self time)',
  ...[...byArea].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([k, t]) => `- ${pct(t)} ${k}`),
  '',
  '## Top functions (self time)',
  ...[...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([k, t]) => `- ${pct(t)} ${k}`),
  '',
  `profile: ${join(dir, file)}`,
];
console.log(lines.join('\n'));
process.exit(0);
