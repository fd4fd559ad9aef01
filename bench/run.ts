// `npm run bench`: every target measured in ONE run on this machine, with CPU pinning — the proxy under
// test on core 0, the load generator and the upstream on core 1 — so the ratios compare like with like.
// Targets: upstream direct, nginx as reverse proxy (1 worker), http-proxy and @fastify/http-proxy
// (baselines), Portcullis passthrough, then every scenario in bench/scenarios/.
//
//   npm run bench                          # everything, 10 s per target
//   npm run bench -- --duration 5          # shorter
//   npm run bench -- --only passthrough,jwt-hs256-hot
//   npm run bench -- --skip-extras         # no latency/RSS/workers measurements
import autocannon, { type Options, type Result } from 'autocannon';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir, availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { passthroughPolicy } from './policy.ts';
import type { BenchContext, Scenario } from './scenarios/types.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    only: { type: 'string' },
    'skip-extras': { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const only = args.only ? new Set(args.only.split(',')) : null;
const wanted = (name: string) => only === null || only.has(name);

const cores = availableParallelism();
const PROXY_CORE = '0';
const LOAD_CORE = cores > 1 ? '1' : '0';
const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
// The harness itself (autocannon) runs on the load core.
if (hasTaskset) execFileSync('taskset', ['-cp', LOAD_CORE, String(process.pid)], { stdio: 'ignore' });

let logCount = 0;
/**
 * Starts a process pinned to `core`. Its output goes to a file, not a pipe: reading a pipe here would put
 * the target's logging work on the load core, next to autocannon.
 */
function pinned(core: string, cmd: string, argv: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const [c, a] = hasTaskset ? ['taskset', ['-c', core, cmd, ...argv]] : [cmd, argv];
  const out = openSync(join(dir, `process-${++logCount}.log`), 'a');
  return spawn(c, a, { env, stdio: ['ignore', out, out] });
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
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
function track(p: ChildProcess, name: string): ChildProcess {
  children.push(p);
  p.once('exit', (code) => {
    if (code && code !== 0 && !stopping) process.stderr.write(`bench: ${name} exited with ${code} (output in ${dir})\n`);
  });
  return p;
}
let stopping = false;
async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));

/** nginx with its own prefix/config; `worker_processes 1`, keep-alive to the upstream. */
async function startNginx(name: string, core: string, body: string): Promise<ChildProcess> {
  const prefix = join(dir, name);
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;\ndaemon off;\nerror_log ${prefix}/logs/error.log crit;\npid ${prefix}/nginx.pid;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  client_body_temp_path ${prefix}/tmp;\n  proxy_temp_path ${prefix}/tmp;\n  keepalive_requests 100000;\n${body}\n}\n`,
  );
  return track(pinned(core, 'nginx', ['-p', prefix, '-c', conf]), name);
}

interface Measured {
  name: string;
  kind: 'direct' | 'baseline' | 'portcullis' | 'scenario';
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  description?: string;
  target?: Scenario['target'];
  /** Passthrough req/s measured right before this scenario. */
  pairedPassthrough?: number;
}

async function measure(url: string, extra: Partial<Options> = {}, duration = DURATION): Promise<Result> {
  // Warm-up: JIT, pools, caches.
  await autocannon({ url, connections: CONNECTIONS, duration: 2, ...extra });
  return autocannon({ url, connections: CONNECTIONS, duration, ...extra });
}

function summary(name: string, kind: Measured['kind'], r: Result, extra: Partial<Measured> = {}): Measured {
  const m: Measured = {
    name,
    kind,
    rps: Math.round(r.requests.average),
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    ...extra,
  };
  process.stdout.write(`  ${name.padEnd(32)} ${String(m.rps).padStart(7)} req/s  p50 ${m.p50} ms  p99 ${m.p99} ms${m.errors ? `  errors ${m.errors}` : ''}${m.non2xx ? `  non-2xx ${m.non2xx}` : ''}\n`);
  return m;
}

async function startPortcullis(policy: string, env: Record<string, string> = {}, core = PROXY_CORE): Promise<{ proc: ChildProcess; url: string; admin: string }> {
  const port = await freePort();
  const adminPort = await freePort();
  const file = join(mkdtempSync(join(dir, 'policy-')), 'policy.yaml');
  writeFileSync(file, policy.replaceAll('${LISTEN}', `127.0.0.1:${port}`).replaceAll('${ADMIN}', `127.0.0.1:${adminPort}`));
  const proc = track(pinned(core, process.execPath, [join(ROOT, 'src/cli/main.ts'), 'start', '--config', file], { ...process.env, LOG_LEVEL: 'warn', ...env }), 'portcullis');
  await waitForPort(port);
  await waitForPort(adminPort);
  return { proc, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` };
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

/** Opens `n` keep-alive connections, one request each, and leaves them idle. */
async function idleConnections(url: string, n: number): Promise<Socket[]> {
  const { port } = new URL(url);
  const sockets: Socket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, () =>
        new Promise<void>((res, rej) => {
          const s = connect(Number(port), '127.0.0.1');
          s.once('error', rej);
          s.on('data', () => res());
          s.write('GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n');
          sockets.push(s);
        }),
      ),
    );
  }
  return sockets;
}

async function loadScenarios(): Promise<Scenario[]> {
  const out: Scenario[] = [];
  const files = readdirSync(join(ROOT, 'bench/scenarios')).filter((f) => f.endsWith('.ts') && f !== 'types.ts').sort();
  for (const f of files) {
    const mod = (await import(join(ROOT, 'bench/scenarios', f))) as { scenario?: Scenario };
    if (mod.scenario) out.push(mod.scenario);
  }
  return out;
}

async function main(): Promise<void> {
  process.stdout.write(`bench: ${cores} cores, proxy on core ${PROXY_CORE}, load+upstream on core ${LOAD_CORE}${hasTaskset ? '' : ' (no taskset: unpinned)'}, ${DURATION}s per target, ${CONNECTIONS} connections\n`);
  const results: Measured[] = [];
  const extras: Record<string, unknown> = {};

  // The upstream: nginx answering a small static body, on the load core.
  const upstreamPort = await freePort();
  await startNginx('upstream', LOAD_CORE, `  server { listen 127.0.0.1:${upstreamPort}; location / { default_type text/plain; return 200 "ok from the upstream\\n"; } }`);
  await waitForPort(upstreamPort);
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const ctx: BenchContext = { upstreamUrl, redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', dir };

  if (wanted('direct')) results.push(summary('upstream direct', 'direct', await measure(upstreamUrl + '/')));

  if (wanted('nginx')) {
    const port = await freePort();
    const p = await startNginx('proxy', PROXY_CORE, `  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }\n  server { listen 127.0.0.1:${port}; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; } }`);
    await waitForPort(port);
    results.push(summary('nginx (1 worker)', 'baseline', await measure(`http://127.0.0.1:${port}/`)));
    await stop(p);
  }

  for (const [name, file] of [['http-proxy', 'bench/baselines/http-proxy.ts'], ['@fastify/http-proxy', 'bench/baselines/fastify-http-proxy.ts']] as const) {
    if (!wanted(name)) continue;
    const port = await freePort();
    const p = track(pinned(PROXY_CORE, process.execPath, [join(ROOT, file), String(port), upstreamUrl]), name);
    await waitForPort(port);
    results.push(summary(name, 'baseline', await measure(`http://127.0.0.1:${port}/`)));
    await stop(p);
  }

  let passthroughRps = 0;
  if (wanted('passthrough') || only === null) {
    const gw = await startPortcullis(passthroughPolicy(upstreamUrl));
    const r = summary('portcullis passthrough', 'portcullis', await measure(gw.url + '/'));
    passthroughRps = r.rps;
    results.push(r);

    if (!args['skip-extras']) {
      // p99 added latency at half of the maximum rate, against the upstream direct at the same rate.
      const rate = Math.max(100, Math.floor(passthroughRps / 2));
      const viaGw = await autocannon({ url: gw.url + '/', connections: CONNECTIONS, duration: DURATION, overallRate: rate });
      const direct = await autocannon({ url: upstreamUrl + '/', connections: CONNECTIONS, duration: DURATION, overallRate: rate });
      extras.latency_at_half_rate = { rate, p99_through_ms: viaGw.latency.p99, p99_direct_ms: direct.latency.p99, added_p99_ms: viaGw.latency.p99 - direct.latency.p99 };
      process.stdout.write(`  p99 at ${rate} req/s: ${viaGw.latency.p99} ms through, ${direct.latency.p99} ms direct\n`);

      // Memory per connection: a fresh gateway (after the load above, V8 keeps the heap it grew to, which
      // says nothing about connections), 1000 keep-alive connections that made one request each and idle.
      const fresh = await startPortcullis(passthroughPolicy(upstreamUrl));
      await new Promise((r) => setTimeout(r, 500));
      const rssFresh = rssMiB(fresh.proc.pid!);
      const sockets = await idleConnections(fresh.url, 1000);
      await new Promise((r) => setTimeout(r, 1000));
      const rssIdle = rssMiB(fresh.proc.pid!);
      extras.rss_1000_idle_keepalive_mib = { fresh: rssFresh, with_1000_idle: rssIdle, after_load_test_process: rssMiB(gw.proc.pid!) };
      process.stdout.write(`  RSS with 1000 idle keep-alive connections: ${rssIdle} MiB (fresh process: ${rssFresh} MiB; the process after the load test: ${rssMiB(gw.proc.pid!)} MiB)\n`);
      for (const s of sockets) s.destroy();
      await stop(fresh.proc);
    }
    await stop(gw.proc);
  }

  if (!args['skip-extras'] && only === null && cores > 1) {
    // workers: 2 on both cores (the load generator shares them: this understates the gain).
    const one = await startPortcullis(passthroughPolicy(upstreamUrl), {}, `0,${LOAD_CORE}`);
    const r1 = await measure(one.url + '/');
    await stop(one.proc);
    const two = await startPortcullis(passthroughPolicy(upstreamUrl, { top: 'workers: 2' }), {}, `0,${LOAD_CORE}`);
    const r2 = await measure(two.url + '/');
    await stop(two.proc);
    extras.workers = { one_rps: Math.round(r1.requests.average), two_rps: Math.round(r2.requests.average), ratio: +(r2.requests.average / r1.requests.average).toFixed(2) };
    process.stdout.write(`  workers: 1 → ${Math.round(r1.requests.average)} req/s, 2 → ${Math.round(r2.requests.average)} req/s (unpinned, sharing cores with the load)\n`);
  }

  for (const scenario of await loadScenarios()) {
    if (!wanted(scenario.name)) continue;
    // Each scenario is paired with a passthrough measured right before it: on a shared VM throughput
    // drifts by 10-20% over minutes, which would otherwise show up as a scenario's cost.
    const reference = await startPortcullis(passthroughPolicy(upstreamUrl));
    const paired = Math.round((await measure(reference.url + '/')).requests.average);
    await stop(reference.proc);
    const stopSetup = scenario.setup ? await scenario.setup(ctx) : null;
    const gw = await startPortcullis(scenario.policy(ctx), scenario.env?.(ctx) ?? {});
    const load = scenario.load ? await scenario.load(ctx) : {};
    const r = await measure((scenario.scheme === 'https' ? gw.url.replace(/^http:/, 'https:') : gw.url) + '/', load);
    results.push(summary(scenario.name, 'scenario', r, { description: scenario.description, target: scenario.target, pairedPassthrough: paired }));
    process.stdout.write(`    (paired passthrough ${paired} req/s: ${(r.requests.average / paired).toFixed(2)}x)\n`);
    await stop(gw.proc);
    await stopSetup?.();
  }

  stopping = true;
  for (const c of children) await stop(c);

  const nginxRps = results.find((r) => r.name.startsWith('nginx'))?.rps ?? 0;
  const lines = [
    `# Benchmark results`,
    '',
    `${new Date().toISOString()} — ${cores} cores; proxy pinned to core ${PROXY_CORE}, autocannon and the nginx upstream to core ${LOAD_CORE}; ${DURATION}s per target after a 2s warm-up; ${CONNECTIONS} connections; Node ${process.version}.`,
    '',
    'Scenario rows compare with a passthrough measured right before each of them (the paired column).',
    '',
    '| target | req/s | p50 ms | p99 ms | vs nginx | vs passthrough | target |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...results.map((r) => {
      const vsNginx = nginxRps ? (r.rps / nginxRps).toFixed(2) + 'x' : '';
      const ref = r.pairedPassthrough ?? passthroughRps;
      const vsPass = ref ? (r.rps / ref).toFixed(2) + 'x' : '';
      const t = r.target ? [r.target.atLeast !== undefined ? `>= ${r.target.atLeast}x` : '', r.target.atMost !== undefined ? `<= ${r.target.atMost}x` : '', r.target.note ?? ''].filter(Boolean).join(' ') : '';
      const met = r.target && ref ? (((r.target.atLeast === undefined || r.rps / ref >= r.target.atLeast) && (r.target.atMost === undefined || r.rps / ref <= r.target.atMost)) ? ' (met)' : ' (not met)') : '';
      return `| ${r.name}${r.errors || r.non2xx ? ` (errors ${r.errors}, non-2xx ${r.non2xx})` : ''} | ${r.rps} | ${r.p50} | ${r.p99} | ${vsNginx} | ${vsPass} | ${t}${t ? met : ''} |`;
    }),
    '',
    ...Object.entries(extras).map(([k, v]) => `- ${k}: \`${JSON.stringify(v)}\``),
    '',
  ];
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results', `${stamp}.json`), JSON.stringify({ date: new Date().toISOString(), cores, duration: DURATION, connections: CONNECTIONS, results, extras }, null, 2) + '\n');
  writeFileSync(join(ROOT, 'bench/results/latest.md'), lines.join('\n'));
  process.stdout.write('\n' + lines.join('\n'));
}

main().catch(async (err: unknown) => {
  stopping = true;
  for (const c of children) await stop(c);
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
