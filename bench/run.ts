// `npm run bench`: every target measured in ONE run on this machine, with CPU pinning — the proxy under
// test on core 0, the load generator and the upstream on core 1 — so the ratios compare like with like.
// Targets: upstream direct, nginx as reverse proxy (1 worker), http-proxy and @fastify/http-proxy
// (baselines), a raw node:http server answering itself, Portcullis passthrough, then every scenario in
// bench/scenarios/ (each paired with a passthrough measured right before it). All of them once per round,
// rounds interleaved; then the extras: open-loop latency, memory, the primary's CPU share with workers.
//
//   npm run bench                                  # everything: 3 rounds, 10 s per target, wrk
//   npm run bench -- --duration 5 --rounds 1       # shorter
//   npm run bench -- --tool both                   # wrk and autocannon columns
//   npm run bench -- --only passthrough,@fastify/http-proxy,full-policy
//   npm run bench -- --only passthrough,open-loop --open-loop-rates 1000,2000,4000
//   npm run bench -- --skip-extras                 # closed-loop rounds only
import type { Options } from 'autocannon';
import { mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  childPids, closedLoop, cores, cpuPressure, cpuTicks, dir, hasTaskset, hasWrk, idleConnections, LOAD_CORE, openLoopRun, pinned, pinSelfToLoadCore,
  PROXY_CORE, ROOT, rssMiB, startNginx, startPortcullis, startUpstream, stop, stopAll, track, waitForPort, freePort, type LoadResult, type Tool,
} from './harness.ts';
import { CHECK_MS, QUIET_MS } from '../src/server/idle-memory.ts';
import { UPSTREAM_BODY } from './body.ts';
import { DEFAULT_MAX_LAG_MS, type OpenLoopResult } from './open-loop.ts';
import { passthroughPolicy } from './policy.ts';
import { scenario as fullPolicyScenario } from './scenarios/full-policy.ts';
import type { BenchContext, Scenario } from './scenarios/types.ts';
import { formatRatio, median, ratioOfMedians, type Ratio } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    tool: { type: 'string', default: hasWrk ? 'wrk' : 'autocannon' },
    only: { type: 'string' },
    'skip-extras': { type: 'boolean', default: false },
    'open-loop-rates': { type: 'string' },
    'max-lag-ms': { type: 'string', default: String(DEFAULT_MAX_LAG_MS) },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const ROUNDS = Math.max(1, Number(args.rounds));
const MAX_LAG_MS = Number(args['max-lag-ms']);
if (!['autocannon', 'wrk', 'both'].includes(args.tool)) throw new Error(`--tool must be autocannon, wrk or both (got ${args.tool})`);
if (args.tool !== 'autocannon' && !hasWrk) throw new Error('--tool wrk/both: wrk is not installed');
const TOOLS: Tool[] = args.tool === 'both' ? ['wrk', 'autocannon'] : [args.tool as Tool];
/** Ratios, medians and targets use the first tool; `both` adds the other's req/s as a column. */
const PRIMARY = TOOLS[0]!;
const SWEEP = args['open-loop-rates'] ? args['open-loop-rates'].split(',').map(Number).filter((n) => n > 0) : [];
const only = args.only ? new Set(args.only.split(',')) : null;
const wanted = (name: string) => only === null || only.has(name);
const extra = (name: string) => !args['skip-extras'] && wanted(name);
/** Issue 16's latency budget: p99 added over the upstream direct at the same rate. */
const ADDED_P99_BUDGET_MS = 2;

pinSelfToLoadCore();

const NAMES = {
  direct: 'upstream direct',
  nginx: 'nginx (1 worker)',
  httpProxy: 'http-proxy',
  fastify: '@fastify/http-proxy',
  rawNode: 'raw node:http',
  passthrough: 'portcullis passthrough',
} as const;

interface ToolColumn {
  rps: number;
  p50: number;
  p99: number;
  rounds: number[];
}

interface Measured {
  name: string;
  kind: 'direct' | 'baseline' | 'portcullis' | 'scenario';
  /** Median over the rounds (first tool). */
  rps: number;
  p50: number;
  p99: number;
  /** Summed over the rounds. */
  errors: number;
  non2xx: number;
  description?: string;
  target?: Scenario['target'];
  /** Median of the passthroughs measured right before this scenario, one per round. */
  pairedPassthrough?: number;
  tool: Tool;
  /** req/s of each round (first tool), in round order. */
  rounds: number[];
  pairedRounds?: number[];
  /** Each tool's figures when more than one ran. */
  byTool?: Partial<Record<Tool, ToolColumn>>;
}

/** Per target and tool, the result of each round. */
const runs = new Map<string, { kind: Measured['kind']; scenario?: Scenario; byTool: Map<Tool, LoadResult[]>; paired: number[] }>();

/**
 * `only`: a scenario that just one tool can drive (autocannon for client certificates, which wrk cannot
 * present) is measured, with its paired passthrough, by that tool alone; its results stand in the
 * primary tool's column, so the ratio still compares like with like (the description says which tool).
 */
async function measureAll(url: string, load: Partial<Options> = {}, only?: Tool): Promise<Map<Tool, LoadResult>> {
  // Warm-up: JIT, pools, caches (once per process, with the first tool).
  await closedLoop(only ?? PRIMARY, url, load, CONNECTIONS, 2);
  const out = new Map<Tool, LoadResult>();
  if (only !== undefined) out.set(PRIMARY, await closedLoop(only, url, load, CONNECTIONS, DURATION));
  else for (const tool of TOOLS) out.set(tool, await closedLoop(tool, url, load, CONNECTIONS, DURATION));
  return out;
}

function record(name: string, kind: Measured['kind'], results: Map<Tool, LoadResult>, extraInfo: { scenario?: Scenario; paired?: number } = {}): void {
  let entry = runs.get(name);
  if (!entry) {
    entry = { kind, ...(extraInfo.scenario ? { scenario: extraInfo.scenario } : {}), byTool: new Map(), paired: [] };
    runs.set(name, entry);
  }
  for (const [tool, r] of results) {
    const list = entry.byTool.get(tool) ?? [];
    list.push(r);
    entry.byTool.set(tool, list);
  }
  if (extraInfo.paired !== undefined) entry.paired.push(extraInfo.paired);
  const line = [...results.values()].map((r) => `${r.tool} ${String(r.rps).padStart(7)} req/s p50 ${r.p50} p99 ${r.p99} ms${r.errors ? ` errors ${r.errors}` : ''}${r.non2xx ? ` non-2xx ${r.non2xx}` : ''}`).join(' | ');
  process.stdout.write(`  ${name.padEnd(30)} ${line}${extraInfo.paired !== undefined ? `  (paired passthrough ${extraInfo.paired}: ${((results.get(PRIMARY)?.rps ?? 0) / extraInfo.paired).toFixed(2)}x)` : ''}\n`);
}

async function measureProcess(name: string, kind: Measured['kind'], start: () => Promise<{ stop: () => Promise<void>; url: string }>): Promise<void> {
  const t = await start();
  try {
    record(name, kind, await measureAll(t.url + '/'));
  } finally {
    await t.stop();
  }
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

function summarize(): Measured[] {
  const out: Measured[] = [];
  for (const [name, e] of runs) {
    const primary = e.byTool.get(PRIMARY) ?? [];
    const m: Measured = {
      name,
      kind: e.kind,
      rps: Math.round(median(primary.map((r) => r.rps))),
      p50: +median(primary.map((r) => r.p50)).toFixed(2),
      p99: +median(primary.map((r) => r.p99)).toFixed(2),
      errors: primary.reduce((a, r) => a + r.errors, 0),
      non2xx: primary.reduce((a, r) => a + r.non2xx, 0),
      tool: PRIMARY,
      rounds: primary.map((r) => r.rps),
    };
    if (e.scenario) {
      m.description = e.scenario.description;
      if (e.scenario.target) m.target = e.scenario.target;
      m.pairedPassthrough = Math.round(median(e.paired));
      m.pairedRounds = e.paired;
    }
    if (TOOLS.length > 1) {
      m.byTool = {};
      for (const [tool, list] of e.byTool) {
        m.byTool[tool] = { rps: Math.round(median(list.map((r) => r.rps))), p50: median(list.map((r) => r.p50)), p99: median(list.map((r) => r.p99)), rounds: list.map((r) => r.rps) };
      }
    }
    out.push(m);
  }
  return out;
}

/** CPU pressure at the start and at the end of the run. */
const pressure: Array<number | null> = [];

interface TargetCheck {
  what: string;
  ratio: Ratio | null;
  atLeast: number;
  met: boolean | null;
}

async function main(): Promise<void> {
  process.stdout.write(
    `bench: ${cores} cores, proxy on core ${PROXY_CORE}, load+upstream on core ${LOAD_CORE}${hasTaskset ? '' : ' (no taskset: unpinned)'}, ` +
      `${ROUNDS} round(s) of ${DURATION}s per target, ${CONNECTIONS} connections, load by ${TOOLS.join(' + ')}\n`,
  );
  const extras: Record<string, unknown> = {};
  pressure.push(cpuPressure());
  const upstream = await startUpstream();
  const upstreamUrl = upstream.url;
  const ctx: BenchContext = { upstreamUrl, redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', dir };
  const scenarios = (await loadScenarios()).filter((s) => wanted(s.name));
  const nodeBaseline = (file: string, name: string, arg = upstreamUrl) => async () => {
    const { url, proc } = await startNodeBaseline(file, name, arg);
    return { url, stop: () => stop(proc) };
  };
  const gateway = (policy: string, env: Record<string, string> = {}) => async () => {
    const gw = await startPortcullis(policy, env);
    return { url: gw.url, stop: () => stop(gw.proc) };
  };

  for (let round = 1; round <= ROUNDS; round++) {
    process.stdout.write(`round ${round}/${ROUNDS}\n`);
    if (wanted('direct')) record(NAMES.direct, 'direct', await measureAll(upstreamUrl + '/'));
    if (wanted('nginx')) {
      await measureProcess(NAMES.nginx, 'baseline', async () => {
        const port = await freePort();
        const p = await startNginx(`proxy-${round}`, PROXY_CORE, `  upstream app { server 127.0.0.1:${upstream.port}; keepalive 64; }\n  server { listen 127.0.0.1:${port}; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; } }`);
        await waitForPort(port);
        return { url: `http://127.0.0.1:${port}`, stop: () => stop(p) };
      });
    }
    if (wanted('http-proxy')) await measureProcess(NAMES.httpProxy, 'baseline', nodeBaseline('bench/baselines/http-proxy.ts', NAMES.httpProxy));
    if (wanted('@fastify/http-proxy')) await measureProcess(NAMES.fastify, 'baseline', nodeBaseline('bench/baselines/fastify-http-proxy.ts', NAMES.fastify));
    if (wanted('raw-node')) await measureProcess(NAMES.rawNode, 'baseline', nodeBaseline('bench/baselines/raw-node.mjs', NAMES.rawNode, UPSTREAM_BODY));
    if (wanted('passthrough')) await measureProcess(NAMES.passthrough, 'portcullis', gateway(passthroughPolicy(upstreamUrl)));

    for (const scenario of scenarios) {
      // Each scenario is paired with a passthrough measured right before it: on a shared VM throughput
      // drifts by 10-20% over minutes, which would otherwise show up as a scenario's cost.
      const only = scenario.tool !== undefined && scenario.tool !== PRIMARY ? scenario.tool : undefined;
      const reference = await startPortcullis(passthroughPolicy(upstreamUrl));
      const paired = (await measureAll(reference.url + '/', {}, only)).get(PRIMARY)!.rps;
      await stop(reference.proc);
      const stopSetup = scenario.setup ? await scenario.setup(ctx) : null;
      const gw = await startPortcullis(scenario.policy(ctx), scenario.env?.(ctx) ?? {});
      try {
        const load = scenario.load ? await scenario.load(ctx) : {};
        const url = (scenario.scheme === 'https' ? gw.url.replace(/^http:/, 'https:') : gw.url) + '/';
        record(scenario.name, 'scenario', await measureAll(url, load, only), { scenario, paired });
      } finally {
        await stop(gw.proc);
        await stopSetup?.();
      }
    }
  }

  let results = summarize();
  const byName = (n: string) => results.find((r) => r.name === n);

  if (extra('open-loop') || extra('memory')) {
    // The closed-loop maximum of the passthrough sets the open-loop rate; measure it if the rounds did not.
    let passMax = byName(NAMES.passthrough)?.rps ?? 0;
    if (!passMax) {
      const gw = await startPortcullis(passthroughPolicy(upstreamUrl));
      passMax = (await measureAll(gw.url + '/')).get(PRIMARY)!.rps;
      await stop(gw.proc);
    }
    Object.assign(extras, await latencyAndMemory(ctx, passMax));
  }
  if (extra('workers') && cores > 1) extras.workers = await workersPhase(upstreamUrl);

  await stopAll();
  pressure.push(cpuPressure());
  results = summarize();
  writeResults(results, extras);
}

/** A Node baseline (bench/baselines/) pinned to the proxy core, listening on a free port. */
async function startNodeBaseline(file: string, name: string, arg: string): Promise<{ url: string; proc: ReturnType<typeof pinned> }> {
  const port = await freePort();
  const proc = track(pinned(PROXY_CORE, process.execPath, [join(ROOT, file), String(port), arg]), name);
  await waitForPort(port);
  return { url: `http://127.0.0.1:${port}`, proc };
}

/**
 * How long memory readings wait after the last request: the gateway's memory release (src/server/idle-memory.ts;
 * by default only the start-up one) runs once no request has started for QUIET_MS, at its next check. Readings
 * are taken when it has had its chance, as they would be on a gateway between bursts; the raw node:http
 * reference waits as long.
 */
const REST_MS = QUIET_MS + CHECK_MS + 750;

/**
 * Open-loop latency and memory, on two fresh gateways (passthrough and full-policy): RSS fresh, RSS holding
 * 1,000 idle keep-alive connections, then a closed-loop warm-up and the open-loop runs (direct, passthrough,
 * full-policy at each rate), then the full-policy process' RSS after that load against its fresh RSS. A raw
 * node:http server is read the same way first, for "memory like a plain Node server".
 */
async function latencyAndMemory(ctx: BenchContext, passMax: number): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const fullLoad = await fullPolicyScenario.load!(ctx);
  const fullHeaders = (fullLoad.headers ?? {}) as Record<string, string>;
  const rest = () => new Promise((r) => setTimeout(r, REST_MS));
  const memory: Record<string, unknown> = { rest_ms: REST_MS };
  const readIdle = async (name: string, pid: number, url: string, headers: Record<string, string>) => {
    await rest();
    const fresh = rssMiB(pid);
    const sockets = await idleConnections(url, 1000, headers);
    await rest();
    const idle = rssMiB(pid);
    // Still open when RSS was read (the gateway closes idle connections after its keep-alive timeout, 5 s).
    const stillOpen = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
    for (const s of sockets) s.destroy();
    process.stdout.write(`  RSS ${name}: fresh ${fresh} MiB, with 1000 idle keep-alive connections ${idle} MiB (${stillOpen} still open)\n`);
    return { fresh_mib: fresh, with_1000_idle_mib: idle, connections_open: stillOpen };
  };
  if (extra('memory')) {
    const raw = await startNodeBaseline('bench/baselines/raw-node.mjs', NAMES.rawNode, UPSTREAM_BODY);
    try {
      memory['raw-node'] = await readIdle(NAMES.rawNode, raw.proc.pid!, raw.url, {});
    } finally {
      await stop(raw.proc);
    }
  }

  const pass = await startPortcullis(passthroughPolicy(ctx.upstreamUrl));
  const full = await startPortcullis(fullPolicyScenario.policy(ctx), fullPolicyScenario.env?.(ctx) ?? {});
  try {
    for (const [name, gw, headers] of extra('memory') ? [['passthrough', pass, {}], ['full-policy', full, fullHeaders]] as const : []) {
      const target = name === 'passthrough' ? 100 : 120;
      const m = await readIdle(name, gw.proc.pid!, gw.url, headers);
      memory[name] = { ...m, target_mib: target, met: m.with_1000_idle_mib <= target };
    }

    await closedLoop(PRIMARY, pass.url + '/', {}, CONNECTIONS, 2);
    await closedLoop(PRIMARY, full.url + '/', fullLoad, CONNECTIONS, 2);
    // Without the open-loop runs, the full-policy process still gets a load phase before its RSS is read again.
    if (!extra('open-loop')) await closedLoop(PRIMARY, full.url + '/', fullLoad, CONNECTIONS, DURATION);
    if (extra('open-loop')) {
      const half = Math.max(100, Math.floor(passMax / 2));
      const rates = [half, ...SWEEP.filter((r) => r !== half)];
      // A discarded warm-up run per target with the generator itself: the gateway's JIT has seen wrk's
      // requests, not the generator's (other headers), and the first run with them paid the re-optimization
      // at its start (measured: a 20-70 ms stall in the first milliseconds of the first run only).
      for (const [url, load] of [[ctx.upstreamUrl + '/', undefined], [pass.url + '/', undefined], [full.url + '/', fullLoad]] as const) {
        await openLoopRun(url, { rate: Math.max(100, Math.floor(half / 2)), connections: CONNECTIONS, seconds: 2, maxLagMs: 1e9, ...(load ? { load } : {}) });
      }
      const sweep: Record<string, unknown>[] = [];
      for (const rate of rates) {
        const run = (url: string, load?: Partial<Options>) => openLoopRun(url, { rate, connections: CONNECTIONS, seconds: DURATION, maxLagMs: MAX_LAG_MS, ...(load ? { load } : {}) });
        const direct = await run(ctx.upstreamUrl + '/');
        const viaPass = await run(pass.url + '/');
        const viaFull = await run(full.url + '/', fullLoad);
        const added = (r: OpenLoopResult) => (r.keptSchedule && direct.keptSchedule ? +(r.latency.p99 - direct.latency.p99).toFixed(3) : null);
        const row = {
          rate,
          direct: openLoopSummary(direct),
          passthrough: { ...openLoopSummary(viaPass), added_p99_ms: added(viaPass) },
          full_policy: { ...openLoopSummary(viaFull), added_p99_ms: added(viaFull) },
        };
        sweep.push(row);
        process.stdout.write(`  open loop ${rate} req/s: p99 direct ${fmtP99(direct)}, passthrough ${fmtP99(viaPass)} (added ${row.passthrough.added_p99_ms ?? 'n/a'}), full-policy ${fmtP99(viaFull)} (added ${row.full_policy.added_p99_ms ?? 'n/a'})\n`);
      }
      // The highest rate up to which the budget *stays* met: walking up the measured rates, the last one
      // before the first miss (a run not reported counts as a miss).
      const withinBudget = (key: 'passthrough' | 'full_policy') => {
        let best: number | null = null;
        for (const r of [...sweep].sort((a, b) => (a.rate as number) - (b.rate as number))) {
          const a = (r[key] as { added_p99_ms: number | null }).added_p99_ms;
          if (a === null || a > ADDED_P99_BUDGET_MS) break;
          best = r.rate as number;
        }
        return best;
      };
      out.open_loop = {
        passthrough_closed_loop_max: passMax,
        half_rate: half,
        budget_added_p99_ms: ADDED_P99_BUDGET_MS,
        runs: sweep,
        ...(SWEEP.length ? { highest_rate_within_budget: { passthrough: withinBudget('passthrough'), full_policy: withinBudget('full_policy') } } : {}),
      };
    }

    if (extra('memory')) {
      await rest();
      const after = rssMiB(full.proc.pid!);
      const fresh = (memory['full-policy'] as { fresh_mib: number }).fresh_mib;
      memory.full_policy_after_load = { fresh_mib: fresh, after_load_mib: after, ratio: +(after / fresh).toFixed(2), target_ratio: 1.3, met: after / fresh <= 1.3 };
      process.stdout.write(`  RSS full-policy after the load phases: ${after} MiB (${(after / fresh).toFixed(2)}x fresh)\n`);
      out.memory = memory;
    }
  } finally {
    await stop(pass.proc);
    await stop(full.proc);
  }
  return out;
}

const fmtP99 = (r: OpenLoopResult) =>
  r.keptSchedule ? `${r.latency.p99} ms, slowest due at ${r.slowest.slice(0, 3).map((x) => `${x.atMs} ms`).join('/')}` : 'NOT REPORTED (generator behind schedule)';

function openLoopSummary(r: OpenLoopResult) {
  return {
    kept_schedule: r.keptSchedule,
    ...(r.refusal ? { refusal: r.refusal } : {}),
    achieved_rate: r.achievedRate,
    ...(r.keptSchedule ? { latency_ms: r.latency } : {}),
    errors: r.errors,
    non2xx: r.non2xx,
    unanswered: r.unanswered,
    generator_lag_p99_ms: r.generatorLag.p99,
    slowest: r.slowest,
    generator_cpu: r.generatorCpu,
  };
}

/**
 * `workers: 2` against one worker, both unpinned on both cores (they share them with the load generator,
 * so this understates the gain), and the primary's share of the CPU time under load: utime+stime of the
 * primary and of each worker (its children) over the measured phase.
 */
async function workersPhase(upstreamUrl: string): Promise<Record<string, unknown>> {
  const both = `0,${LOAD_CORE}`;
  const one = await startPortcullis(passthroughPolicy(upstreamUrl), {}, both);
  await closedLoop(PRIMARY, one.url + '/', {}, CONNECTIONS, 2);
  const r1 = await closedLoop(PRIMARY, one.url + '/', {}, CONNECTIONS, DURATION);
  await stop(one.proc);
  const two = await startPortcullis(passthroughPolicy(upstreamUrl, { top: 'workers: 2' }), {}, both);
  const primary = two.proc.pid!;
  await closedLoop(PRIMARY, two.url + '/', {}, CONNECTIONS, 2);
  const workers = childPids(primary);
  // A worker that died during the load (and was replaced) reads as 0 ticks: the share is then wrong, and
  // `worker_pids_found` against the live children says so.
  const ticks = (pid: number) => {
    try {
      return cpuTicks(pid);
    } catch {
      return 0;
    }
  };
  const before = [primary, ...workers].map(ticks);
  const r2 = await closedLoop(PRIMARY, two.url + '/', {}, CONNECTIONS, DURATION);
  const after = [primary, ...workers].map(ticks);
  const workersAfter = childPids(primary);
  await stop(two.proc);
  const deltas = after.map((a, i) => a - before[i]!);
  const total = deltas.reduce((a, b) => a + b, 0);
  const share = total ? +(deltas[0]! / total).toFixed(3) : null;
  process.stdout.write(`  workers: 1 → ${r1.rps} req/s, 2 → ${r2.rps} req/s; primary's CPU share under load ${share === null ? 'n/a' : (share * 100).toFixed(1) + '%'} (${deltas.join(' / ')} ticks: primary / workers ${workers.join(', ')})\n`);
  return {
    one_rps: r1.rps,
    two_rps: r2.rps,
    ratio: +(r2.rps / r1.rps).toFixed(2),
    primary_cpu_share: share,
    cpu_ticks: { primary: deltas[0], workers: deltas.slice(1) },
    worker_pids_found: workers.length,
    workers_replaced_during_load: workersAfter.filter((p) => !workers.includes(p)).length,
  };
}

/** Issue 16's throughput targets, each a ratio of medians with its spread. */
function targetChecks(results: Measured[]): TargetCheck[] {
  const get = (n: string) => results.find((r) => r.name === n);
  const pass = get(NAMES.passthrough);
  const full = get('full-policy');
  const checks: TargetCheck[] = [];
  const add = (what: string, num: number[] | undefined, den: number[] | undefined, atLeast: number) => {
    const ratio = num && den ? ratioOfMedians(num, den) : null;
    checks.push({ what, ratio, atLeast, met: ratio ? ratio.value >= atLeast : null });
  };
  add('passthrough vs @fastify/http-proxy', pass?.rounds, get(NAMES.fastify)?.rounds, 1.5);
  add('passthrough vs http-proxy', pass?.rounds, get(NAMES.httpProxy)?.rounds, 2);
  add('passthrough vs raw node:http', pass?.rounds, get(NAMES.rawNode)?.rounds, 0.45);
  add('full-policy vs passthrough (paired)', full?.rounds, full?.pairedRounds, 0.75);
  add('full-policy vs @fastify/http-proxy', full?.rounds, get(NAMES.fastify)?.rounds, 1.0);
  return checks;
}

const metText = (met: boolean | null) => (met === null ? 'not measured' : met ? 'met' : 'not met');

function writeResults(results: Measured[], extras: Record<string, unknown>): void {
  const get = (n: string) => results.find((r) => r.name === n);
  const nginx = get(NAMES.nginx);
  const pass = get(NAMES.passthrough);
  const vs = (r: Measured, base: Measured | undefined) => (base && base !== r ? formatRatio(ratioOfMedians(r.rounds, base.rounds)) : '');
  const checks = targetChecks(results);
  const otherTool = TOOLS[1];
  const lines = [
    `# Benchmark results`,
    '',
    `${new Date().toISOString()} — ${cores} cores; proxy pinned to core ${PROXY_CORE}, the load generator and the nginx upstream to core ${LOAD_CORE}; ` +
      `${ROUNDS} interleaved round(s) of ${DURATION}s per target after a 2s warm-up; ${CONNECTIONS} connections; load by ${TOOLS.join(' + ')}; Node ${process.version}.`,
    '',
    `req/s, p50 and p99 are medians over the rounds (${PRIMARY}); a ratio is the ratio of the medians, with the min–max of the per-round ratios in parentheses. ` +
      'Scenario rows compare with a passthrough measured right before each of them (the paired column). Only ratios mean something: absolute numbers depend on this shared VM.',
    '',
    ...(pressure.some((p) => p !== null)
      ? [`CPU pressure (share of the last minute some task waited for a CPU, /proc/pressure/cpu) at the start and the end: ${pressure.map((p) => (p === null ? 'n/a' : `${p}%`)).join(', ')}.` +
          `${pressure.some((p) => (p ?? 0) > 20) ? ' **The machine was busy: do not read the ratios as the gateway\'s.**' : ''}`, '']
      : []),
    `| target | req/s |${otherTool ? ` ${otherTool} req/s |` : ''} p50 ms | p99 ms | vs nginx | vs @fastify/http-proxy | vs http-proxy | vs raw node | vs passthrough | target |`,
    `| --- | ---: |${otherTool ? ' ---: |' : ''} ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |`,
    ...results.map((r) => {
      const paired = r.pairedRounds ? ratioOfMedians(r.rounds, r.pairedRounds) : pass && pass !== r ? ratioOfMedians(r.rounds, pass.rounds) : null;
      const t = r.target ? [r.target.atLeast !== undefined ? `>= ${r.target.atLeast}x` : '', r.target.atMost !== undefined ? `<= ${r.target.atMost}x` : '', r.target.note ?? ''].filter(Boolean).join(' ') : '';
      const met = r.target && paired ? (((r.target.atLeast === undefined || paired.value >= r.target.atLeast) && (r.target.atMost === undefined || paired.value <= r.target.atMost)) ? ' (met)' : ' (not met)') : '';
      return `| ${r.name}${r.errors || r.non2xx ? ` (errors ${r.errors}, non-2xx ${r.non2xx})` : ''} | ${r.rps} |${otherTool ? ` ${r.byTool?.[otherTool]?.rps ?? ''} |` : ''} ${r.p50} | ${r.p99} | ${vs(r, nginx)} | ${vs(r, get(NAMES.fastify))} | ${vs(r, get(NAMES.httpProxy))} | ${vs(r, get(NAMES.rawNode))} | ${formatRatio(paired)} | ${t}${t ? met : ''} |`;
    }),
    '',
    '## Targets from issue 16',
    '',
    '| ratio | value (spread) | target | |',
    '| --- | ---: | ---: | --- |',
    ...checks.map((c) => `| ${c.what} | ${formatRatio(c.ratio)} | >= ${c.atLeast}x | ${metText(c.met)} |`),
    ...extrasLines(extras),
    '',
  ];
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench/results', `${stamp}.json`),
    JSON.stringify({ date: new Date().toISOString(), cores, duration: DURATION, connections: CONNECTIONS, rounds: ROUNDS, tools: TOOLS, cpu_pressure_avg60: pressure, results, targets: checks, extras }, null, 2) + '\n',
  );
  writeFileSync(join(ROOT, 'bench/results/latest.md'), lines.join('\n'));
  process.stdout.write('\n' + lines.join('\n'));
}

function extrasLines(extras: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const ol = extras.open_loop as { half_rate: number; passthrough_closed_loop_max: number; runs: Array<Record<string, any>>; highest_rate_within_budget?: Record<string, number | null> } | undefined;
  if (ol) {
    lines.push('', '## Open-loop latency (bench/open-loop.ts)', '', `Fixed schedule; latency from the moment the generator saw each request due, so a target's stall counts for every request behind it, and the generator's own timer lag (p99 in the last column: direct / passthrough / full-policy) is kept out. The first rate is half of the passthrough's closed-loop maximum (${ol.passthrough_closed_loop_max} req/s). Target: p99 added over direct <= ${ADDED_P99_BUDGET_MS} ms.`, '');
    lines.push('| rate | direct p99 | passthrough p99 | added | full-policy p99 | added | generator lag p99 | |', '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const r of ol.runs) {
      const p = (x: Record<string, any>) => (x.kept_schedule ? `${x.latency_ms.p99} ms${x.achieved_rate < r.rate * 0.98 ? ` (achieved ${x.achieved_rate})` : ''}` : 'not reported');
      const a = (x: Record<string, any>) => (x.added_p99_ms === null ? 'n/a' : `${x.added_p99_ms} ms (${x.added_p99_ms <= ADDED_P99_BUDGET_MS ? 'met' : 'not met'})`);
      const refused = [r.direct, r.passthrough, r.full_policy].some((x) => !x.kept_schedule);
      const lag = [r.direct, r.passthrough, r.full_policy].map((x) => x.generator_lag_p99_ms).join(' / ');
      lines.push(`| ${r.rate} | ${p(r.direct)} | ${p(r.passthrough)} | ${a(r.passthrough)} | ${p(r.full_policy)} | ${a(r.full_policy)} | ${lag} ms | ${refused ? 'the generator fell behind its own schedule: not reported' : ''} |`);
    }
    if (ol.highest_rate_within_budget) lines.push('', `Highest rate up to which p99 added stays <= ${ADDED_P99_BUDGET_MS} ms (every lower measured rate within it too): passthrough ${ol.highest_rate_within_budget.passthrough ?? 'none'}, full-policy ${ol.highest_rate_within_budget.full_policy ?? 'none'}.`);
  }
  const mem = extras.memory as Record<string, any> | undefined;
  if (mem) {
    lines.push('', '## Memory', '', `RSS read ${mem.rest_ms / 1000} s after the last request, with the gateway's default memory release (\`limits.release_memory: startup\`: once, before the first request; docs/operations.md "Memory").`, '');
    const raw = mem['raw-node'];
    if (raw) lines.push(`- raw node:http server (reference): RSS with 1,000 idle keep-alive connections ${raw.with_1000_idle_mib} MiB (fresh process ${raw.fresh_mib} MiB; ${raw.connections_open} of them still open at the reading)`);
    for (const k of ['passthrough', 'full-policy']) {
      const m = mem[k];
      if (m) lines.push(`- ${k}: RSS with 1,000 idle keep-alive connections ${m.with_1000_idle_mib} MiB (fresh process ${m.fresh_mib} MiB; ${m.connections_open} of them still open at the reading); target <= ${m.target_mib} MiB: ${metText(m.met)}`);
    }
    const a = mem.full_policy_after_load;
    if (a) lines.push(`- full-policy after the load phases: ${a.after_load_mib} MiB, ${a.ratio}x its fresh RSS (${a.fresh_mib} MiB); target within ${a.target_ratio}x: ${metText(a.met)}`);
  }
  const w = extras.workers as Record<string, any> | undefined;
  if (w) {
    lines.push('', '## Workers', '', `- workers: 1 → ${w.one_rps} req/s, workers: 2 → ${w.two_rps} req/s (${w.ratio}x; both on both cores, sharing them with the load)`);
    lines.push(`- the primary's share of the CPU time under load: ${w.primary_cpu_share === null ? 'n/a' : (w.primary_cpu_share * 100).toFixed(1) + '%'} (ticks: primary ${w.cpu_ticks.primary}, workers ${w.cpu_ticks.workers.join(', ')})`);
  }
  return lines;
}

main().catch(async (err: unknown) => {
  await stopAll();
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
