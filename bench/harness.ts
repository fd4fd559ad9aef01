// The parts bench/run.ts and bench/soak.ts share: CPU pinning (the proxy under test on core 0, the load
// generators and the upstream on core 1), child processes, the nginx upstream, a Portcullis under a given
// policy, the closed-loop load generators (autocannon in this process, wrk as a pinned child), the open-loop
// generator as a pinned child, and /proc readings (RSS, CPU ticks, child pids).
import autocannon, { type Options } from 'autocannon';
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir, availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { gatewayRuntime } from '../scripts/gateway-runtime.ts';
import { UPSTREAM_BODY } from './body.ts';
import type { OpenLoopResult } from './open-loop.ts';
import { parseWrkOutput, plainRequests, wrkInvocation } from './wrk.ts';

export const ROOT = resolve(import.meta.dirname, '..');
export const cores = availableParallelism();
export const PROXY_CORE = '0';
export const LOAD_CORE = cores > 1 ? '1' : '0';
export const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).error === undefined;
export const hasWrk = spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error === undefined;
export const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));

export type Tool = 'autocannon' | 'wrk';

/** autocannon runs in this process: it goes on the load core, next to the upstream. */
export function pinSelfToLoadCore(): void {
  if (hasTaskset) execFileSync('taskset', ['-cp', LOAD_CORE, String(process.pid)], { stdio: 'ignore' });
}

let logCount = 0;
const logs = new WeakMap<ChildProcess, string>();
/**
 * Starts a process pinned to `core`. Its output goes to a file, not a pipe: reading a pipe here would put
 * the target's logging work on the load core, next to the load generator.
 */
export function pinned(core: string, cmd: string, argv: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const [c, a] = hasTaskset ? ['taskset', ['-c', core, cmd, ...argv]] : [cmd, argv];
  const log = join(dir, `process-${++logCount}.log`);
  const out = openSync(log, 'a');
  const p = spawn(c, a, { env, stdio: ['ignore', out, out] });
  closeSync(out);
  logs.set(p, log);
  return p;
}

/** Runs a pinned process to its end; resolves with its output. */
export async function runPinned(core: string, cmd: string, argv: string[]): Promise<{ code: number | null; output: string }> {
  const p = pinned(core, cmd, argv);
  const code = await new Promise<number | null>((res, rej) => {
    p.once('error', rej);
    p.once('exit', res);
  });
  return { code, output: readFileSync(logs.get(p)!, 'utf8') };
}

export async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} did not open`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const children: ChildProcess[] = [];
let stopping = false;
export function track(p: ChildProcess, name: string): ChildProcess {
  children.push(p);
  p.once('exit', (code) => {
    if (code && code !== 0 && !stopping) process.stderr.write(`bench: ${name} exited with ${code} (output in ${logs.get(p) ?? dir})\n`);
  });
  return p;
}
export async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}
export async function stopAll(): Promise<void> {
  stopping = true;
  for (const c of children) await stop(c);
}

/** nginx with its own prefix/config; `worker_processes 1`, keep-alive to the upstream. */
export async function startNginx(name: string, core: string, body: string): Promise<ChildProcess> {
  const prefix = join(dir, name);
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;\ndaemon off;\nerror_log ${prefix}/logs/error.log crit;\npid ${prefix}/nginx.pid;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  client_body_temp_path ${prefix}/tmp;\n  proxy_temp_path ${prefix}/tmp;\n  keepalive_requests 100000;\n${body}\n}\n`,
  );
  return track(pinned(core, 'nginx', ['-p', prefix, '-c', conf]), name);
}

/** The upstream of every target: nginx answering the 100-byte body, on the load core. */
export async function startUpstream(): Promise<{ proc: ChildProcess; url: string; port: number }> {
  const port = await freePort();
  const proc = await startNginx('upstream', LOAD_CORE, `  server { listen 127.0.0.1:${port}; location / { default_type text/plain; return 200 "${UPSTREAM_BODY.trimEnd()}\\n"; } }`);
  await waitForPort(port);
  return { proc, url: `http://127.0.0.1:${port}`, port };
}

export interface Gateway {
  proc: ChildProcess;
  url: string;
  admin: string;
}

/** What users run: the compiled gateway (bin/portcullis.js → dist/), built once per bench process. */
export const GATEWAY_ENTRY = join(ROOT, 'bin/portcullis.js');
/** The environment and Node flags of bin/portcullis.js' first line, as npm start and the image set them. */
export const GATEWAY_RUNTIME = gatewayRuntime(ROOT);
let built = false;
export function buildGateway(): void {
  if (built) return;
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build.ts')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('scripts/build.ts failed');
  built = true;
}

export async function startPortcullis(policy: string, env: Record<string, string> = {}, core = PROXY_CORE): Promise<Gateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const file = join(mkdtempSync(join(dir, 'policy-')), 'policy.yaml');
  writeFileSync(file, policy.replaceAll('${LISTEN}', `127.0.0.1:${port}`).replaceAll('${ADMIN}', `127.0.0.1:${adminPort}`));
  buildGateway();
  const proc = track(pinned(core, process.execPath, [...GATEWAY_RUNTIME.flags, GATEWAY_ENTRY, 'start', '--config', file], { ...process.env, ...GATEWAY_RUNTIME.env, LOG_LEVEL: 'warn', ...env }), 'portcullis');
  await waitForPort(port);
  await waitForPort(adminPort);
  return { proc, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` };
}

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

/**
 * The share of the last 60 s in which some task waited for a CPU (/proc/pressure/cpu "some avg60"), in %:
 * how busy the machine was besides the bench. Null where PSI is not available.
 */
export function cpuPressure(): number | null {
  try {
    return Number(/some avg10=[\d.]+ avg60=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? NaN) || 0;
  } catch {
    return null;
  }
}

/** utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return Number(fields[11]) + Number(fields[12]);
}

/** The direct children of a process (a cluster primary's workers), from /proc/PID/task/TID/children. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (text) out.push(...text.split(/\s+/).map(Number));
  }
  return out;
}

/** Opens `n` keep-alive connections, one request each (with `headers`), and leaves them idle. */
export async function idleConnections(url: string, n: number, headers: Record<string, string> = {}): Promise<Socket[]> {
  const { port } = new URL(url);
  const head = `GET /idle HTTP/1.1\r\nHost: bench\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  const sockets: Socket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, () =>
        new Promise<void>((res, rej) => {
          const s = connect(Number(port), '127.0.0.1');
          s.once('error', rej);
          s.on('data', () => res());
          s.write(head);
          sockets.push(s);
        }),
      ),
    );
  }
  return sockets;
}

export interface LoadResult {
  tool: Tool;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

/** One closed-loop run (no warm-up) with autocannon in this process or wrk pinned to the load core. */
export async function closedLoop(tool: Tool, url: string, load: Partial<Options>, connections: number, seconds: number): Promise<LoadResult> {
  if (tool === 'autocannon') {
    const r = await autocannon({ url, connections, duration: seconds, ...load });
    return { tool, rps: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
  }
  const inv = wrkInvocation(url, load, connections, seconds);
  const args = [...inv.args];
  if (inv.script) {
    const script = join(mkdtempSync(join(dir, 'wrk-')), 'load.lua');
    writeFileSync(script, inv.script);
    args.unshift('-s', script);
  }
  const { code, output } = await runPinned(LOAD_CORE, 'wrk', args);
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${output}`);
  const r = parseWrkOutput(output);
  // wrk counts only answers above 399 as "Non-2xx or 3xx"; autocannon counts 3xx too (the bench has none).
  return { tool, rps: Math.round(r.rps), p50: r.p50, p99: r.p99, errors: r.errors, non2xx: r.non2xx };
}

/** The open-loop generator (bench/open-loop.ts) as a child pinned to the load core, for its own event loop. */
export async function openLoopRun(url: string, opts: { rate: number; connections: number; seconds: number; load?: Partial<Options>; maxLagMs?: number }): Promise<OpenLoopResult> {
  const scratch = mkdtempSync(join(dir, 'open-loop-'));
  const out = join(scratch, 'result.json');
  const argv = [join(ROOT, 'bench/open-loop.ts'), '--url', url, '--rate', String(opts.rate), '--connections', String(opts.connections), '--duration', String(opts.seconds), '--out', out];
  if (opts.maxLagMs !== undefined) argv.push('--max-lag-ms', String(opts.maxLagMs));
  if (opts.load) {
    const file = join(scratch, 'requests.json');
    writeFileSync(file, JSON.stringify(plainRequests(opts.load)));
    argv.push('--load-file', file);
  }
  const { code, output } = await runPinned(LOAD_CORE, process.execPath, argv);
  if (code !== 0) throw new Error(`open-loop generator exited with ${code}: ${output}`);
  return JSON.parse(readFileSync(out, 'utf8')) as OpenLoopResult;
}
