// `node bench/soak.ts [--minutes 30]`: the full-policy scenario under a steady open-loop load for a long
// time, to see memory that grows with traffic (a leak) rather than with the heap's warm-up. Same layout as
// bench/run.ts: the gateway on core 0, the upstream and the load generators on core 1.
//
// 1. a fresh full-policy gateway; its closed-loop maximum (wrk, else autocannon; --duration seconds);
// 2. the open-loop generator at half that rate (or --rate) for --minutes, RSS of the gateway every 10 s;
// 3. RSS growth from the end of the warm-up (the first 5 minutes; a quarter of runs under 20 minutes) to the
//    end (target < 10%), errors and non-2xx answers, the open-loop latencies;
// 4. bench/results/soak-<stamp>.json and soak-<stamp>.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closedLoop, cores, cpuPressure, dir, hasWrk, LOAD_CORE, openLoopRun, pinSelfToLoadCore, PROXY_CORE, ROOT, rssMiB, startPortcullis, startUpstream, stopAll } from './harness.ts';
import { DEFAULT_MAX_LAG_MS, describeOpenLoop } from './open-loop.ts';
import { scenario as full } from './scenarios/full-policy.ts';
import type { BenchContext } from './scenarios/types.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    rate: { type: 'string' },
    'sample-seconds': { type: 'string', default: '10' },
    'max-lag-ms': { type: 'string', default: String(DEFAULT_MAX_LAG_MS) },
  },
});
const MINUTES = Number(args.minutes);
const CONNECTIONS = Number(args.connections);
const SAMPLE_MS = Number(args['sample-seconds']) * 1000;
const WARMUP_S = MINUTES >= 20 ? 300 : (MINUTES * 60) / 4;
const GROWTH_TARGET = 0.1;

pinSelfToLoadCore();

async function main(): Promise<void> {
  const upstream = await startUpstream();
  const ctx: BenchContext = { upstreamUrl: upstream.url, redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', dir };
  const gw = await startPortcullis(full.policy(ctx), full.env?.(ctx) ?? {});
  const pid = gw.proc.pid!;
  const load = await full.load!(ctx);
  const tool = hasWrk ? 'wrk' : 'autocannon';
  const freshRss = rssMiB(pid);
  const pressure = [cpuPressure()];

  let rate = Number(args.rate ?? 0);
  let closedLoopMax: number | null = null;
  if (!rate) {
    await closedLoop(tool, gw.url + '/', load, CONNECTIONS, 2);
    closedLoopMax = (await closedLoop(tool, gw.url + '/', load, CONNECTIONS, Number(args.duration))).rps;
    rate = Math.max(100, Math.floor(closedLoopMax / 2));
  }
  process.stdout.write(`soak: full-policy, ${cores} cores (gateway on core ${PROXY_CORE}, load on ${LOAD_CORE}); closed-loop max ${closedLoopMax ?? 'not measured'} req/s; open loop at ${rate} req/s for ${MINUTES} min, RSS every ${SAMPLE_MS / 1000} s\n`);

  const started = Date.now();
  const samples: Array<{ t_s: number; rss_mib: number }> = [];
  const sample = () => {
    const s = { t_s: Math.round((Date.now() - started) / 1000), rss_mib: rssMiB(pid) };
    samples.push(s);
    if (s.t_s % 60 < SAMPLE_MS / 1000) process.stdout.write(`  ${s.t_s}s RSS ${s.rss_mib} MiB\n`);
  };
  sample();
  const timer = setInterval(sample, SAMPLE_MS);
  const result = await openLoopRun(gw.url + '/', { rate, connections: CONNECTIONS, seconds: MINUTES * 60, load, maxLagMs: Number(args['max-lag-ms']) });
  clearInterval(timer);
  sample();
  pressure.push(cpuPressure());
  await stopAll();

  // Growth from the first sample at or after the warm-up to the last one (and to the peak after it).
  const base = samples.find((s) => s.t_s >= WARMUP_S) ?? samples[samples.length - 1]!;
  const last = samples[samples.length - 1]!;
  const peak = Math.max(...samples.filter((s) => s.t_s >= base.t_s).map((s) => s.rss_mib));
  const growth = +((last.rss_mib - base.rss_mib) / base.rss_mib).toFixed(3);
  const summary = {
    date: new Date().toISOString(),
    scenario: full.name,
    minutes: MINUTES,
    closed_loop_max: closedLoopMax,
    rate,
    connections: CONNECTIONS,
    rss: {
      fresh_mib: freshRss,
      warmup_s: WARMUP_S,
      after_warmup_mib: base.rss_mib,
      end_mib: last.rss_mib,
      peak_after_warmup_mib: peak,
      growth_after_warmup: growth,
      target_growth: GROWTH_TARGET,
      met: growth < GROWTH_TARGET,
    },
    requests: { scheduled: result.scheduled, completed: result.completed, achieved_rate: result.achievedRate, errors: result.errors, non2xx: result.non2xx, unanswered: result.unanswered },
    latency_ms: result.keptSchedule ? result.latency : null,
    kept_schedule: result.keptSchedule,
    ...(result.refusal ? { refusal: result.refusal } : {}),
    generator_lag_ms: result.generatorLag,
    cpu_pressure_avg60: pressure,
    samples,
  };
  const md = [
    `# Soak: ${full.name}, ${MINUTES} min`,
    '',
    `${summary.date} — ${cores} cores; gateway on core ${PROXY_CORE}, upstream and the open-loop generator on core ${LOAD_CORE}; ${rate} req/s open loop over ${CONNECTIONS} connections (half of the closed-loop maximum ${closedLoopMax ?? '(not measured: --rate given)'}); Node ${process.version}.`,
    '',
    `- RSS: fresh ${freshRss} MiB, after the warm-up (${WARMUP_S} s) ${base.rss_mib} MiB, at the end ${last.rss_mib} MiB (peak ${peak} MiB): growth ${(growth * 100).toFixed(1)}%; target < ${GROWTH_TARGET * 100}%: ${summary.rss.met ? 'met' : 'not met'}`,
    `- requests: ${result.completed} of ${result.scheduled} answered (${result.achievedRate} req/s), errors ${result.errors}, non-2xx ${result.non2xx}, unanswered ${result.unanswered}`,
    `- CPU pressure (/proc/pressure/cpu some avg60) at the start and the end: ${pressure.map((p) => (p === null ? 'n/a' : `${p}%`)).join(', ')}`,
    `- latency: ${result.keptSchedule ? `p50 ${result.latency.p50} p90 ${result.latency.p90} p99 ${result.latency.p99} p99.9 ${result.latency.p999} max ${result.latency.max} ms (from when each request was due, as the generator saw it; its own lag apart)` : `not reported: ${result.refusal}`}`,
    '',
    `RSS samples (every ${SAMPLE_MS / 1000} s) are in the JSON file.`,
    '',
  ].join('\n');
  const stamp = summary.date.replace(/[:.]/g, '-');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results', `soak-${stamp}.json`), JSON.stringify(summary, null, 2) + '\n');
  writeFileSync(join(ROOT, 'bench/results', `soak-${stamp}.md`), md);
  process.stdout.write(`\n${describeOpenLoop(result)}\n\n${md}`);
}

main().catch(async (err: unknown) => {
  await stopAll();
  process.stderr.write(`soak failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
