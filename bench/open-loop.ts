// An open-loop load generator: requests go out on a fixed schedule (rate R over C keep-alive connections).
// autocannon's `overallRate` and wrk are closed loops: a slow answer delays the next send, so a stall is
// counted once instead of for every request that should have gone out during it (coordinated omission).
// Here a request that finds no free connection waits in a queue, and that wait is part of its latency.
//
//   node bench/open-loop.ts --url http://127.0.0.1:8080/ --rate 2000 --connections 64 --duration 10 \
//     [--load-file requests.json] [--max-lag-ms 5] [--out result.json]
//
// A request's latency runs from the moment the generator saw it was due: its intended time, or later when
// the generator's own timer fired late (Node's timers fire on millisecond ticks, and the generator shares
// its core with the upstream). That lag is the generator's, not the target's, so it is kept out of the
// latency and reported apart; a target's stall still queues every request due behind it. When the p99 of
// the lag is above --max-lag-ms, requests went out in bursts unlike the schedule and the generator refuses
// to report latencies.
//
// Raw node:net sockets and a minimal HTTP/1.1 response parser (Content-Length and chunked bodies) keep the
// generator's own cost low.
import { writeFileSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { PlainRequest } from './wrk.ts';

export interface ParsedResponse {
  status: number;
  /** The server said `connection: close` (or answered HTTP/1.0 without keep-alive). */
  close: boolean;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/** Incremental HTTP/1.1 response parser: push bytes, get the responses completed by them. */
export class ResponseParser {
  private buf: Buffer = Buffer.alloc(0);
  private state: 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'trailers' = 'head';
  private remaining = 0;
  private current: ParsedResponse | null = null;

  push(data: Buffer): ParsedResponse[] {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    const done: ParsedResponse[] = [];
    for (;;) {
      if (this.state === 'head') {
        const end = this.buf.indexOf(CRLF2);
        if (end < 0) return done;
        const head = this.buf.subarray(0, end).toString('latin1');
        this.buf = this.buf.subarray(end + 4);
        const lines = head.split('\r\n');
        const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0]!);
        if (!m) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify(lines[0])}`);
        const status = Number(m[2]);
        let length = -1;
        let chunked = false;
        let connection = '';
        for (let i = 1; i < lines.length; i++) {
          const line = lines[i]!;
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim().toLowerCase();
          if (name === 'content-length') length = Number(value);
          else if (name === 'transfer-encoding') chunked = value.split(',').map((v) => v.trim()).includes('chunked');
          else if (name === 'connection') connection = value;
        }
        if (status >= 100 && status < 200) continue; // 100 Continue and friends: the real answer follows
        this.current = { status, close: connection === 'close' || (m[1] === '0' && connection !== 'keep-alive') };
        if (chunked) this.state = 'chunk-size';
        else if (length > 0) {
          this.state = 'length';
          this.remaining = length;
        } else if (length === 0 || status === 204 || status === 304) {
          done.push(this.current);
        } else {
          throw new Error('response without Content-Length or chunked encoding (read-until-close is not supported)');
        }
      } else if (this.state === 'length') {
        const take = Math.min(this.remaining, this.buf.length);
        this.buf = this.buf.subarray(take);
        this.remaining -= take;
        if (this.remaining > 0) return done;
        done.push(this.current!);
        this.state = 'head';
      } else if (this.state === 'chunk-size') {
        const end = this.buf.indexOf(CRLF);
        if (end < 0) return done;
        const size = parseInt(this.buf.subarray(0, end).toString('latin1').split(';')[0]!, 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size');
        this.buf = this.buf.subarray(end + 2);
        if (size === 0) this.state = 'trailers';
        else {
          this.state = 'chunk-data';
          this.remaining = size + 2; // the data and its CRLF
        }
      } else if (this.state === 'chunk-data') {
        const take = Math.min(this.remaining, this.buf.length);
        this.buf = this.buf.subarray(take);
        this.remaining -= take;
        if (this.remaining > 0) return done;
        this.state = 'chunk-size';
      } else {
        // Trailers: header lines up to an empty line.
        const end = this.buf.indexOf(CRLF);
        if (end < 0) return done;
        this.buf = this.buf.subarray(end + 2);
        if (end === 0) {
          done.push(this.current!);
          this.state = 'head';
        }
      }
    }
  }
}

/** The bytes of one request; `host` is the URL's host:port. */
export function requestBytes(r: PlainRequest, host: string): Buffer {
  const headers = Object.entries(r.headers);
  const has = (name: string) => headers.some(([k]) => k.toLowerCase() === name);
  let head = `${r.method} ${r.path} HTTP/1.1\r\n`;
  if (!has('host')) head += `host: ${host}\r\n`;
  for (const [k, v] of headers) head += `${k}: ${v}\r\n`;
  const body = r.body !== undefined ? Buffer.from(r.body) : null;
  if (body && !has('content-length')) head += `content-length: ${body.length}\r\n`;
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body ?? Buffer.alloc(0)]);
}

/** A growable array of doubles (millions of latencies in a soak run). */
class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}

/** The value at quantile q (0..1) of an ascending array: nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** `inFlight` of a connection whose priming request is out. */
const PRIMING = -2;

/** Above this p99 of its own lag (ms), the generator's sends were bursts, not the schedule. */
export const DEFAULT_MAX_LAG_MS = 5;

export interface OpenLoopOptions {
  url: string;
  /** Requests per second, spread evenly (request i is due at start + i/rate). */
  rate: number;
  connections: number;
  durationSec: number;
  /** Sent in rotation; default one GET of the URL's path. */
  requests?: PlainRequest[];
  /** Refuse to report when the p99 of the generator's own lag is above this (ms; default 5). */
  maxLagMs?: number;
  /** After the last scheduled request, how long answers are waited for (ms). */
  graceMs?: number;
}

export interface OpenLoopResult {
  url: string;
  rate: number;
  connections: number;
  durationSec: number;
  scheduled: number;
  completed: number;
  /** Completed answers per second of the schedule. */
  achievedRate: number;
  /** Connection errors and resets while a request was in flight. */
  errors: number;
  /** Answers with a status outside 200-399. */
  non2xx: number;
  /** Requests still queued or in flight when the grace time ended; counted in the latencies at that time. */
  unanswered: number;
  /** From the time each request was seen due (its intended time, or the generator's late tick) to the end of its answer, ms. */
  latency: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** How late the generator noticed that a request was due (its timer and event loop), ms; not in `latency`. */
  generatorLag: { p50: number; p99: number; max: number };
  /** The slowest answers: when in the run they were due (ms from its start) and how long they took, slowest first. */
  slowest: { atMs: number; latencyMs: number }[];
  /** The generator's CPU time over the run's wall time (1 = its core was saturated). */
  generatorCpu: number;
  /** False when the generator could not keep its own schedule: then `latency` says nothing about the target. */
  keptSchedule: boolean;
  refusal?: string;
}

interface Conn {
  socket: Socket;
  parser: ResponseParser;
  /** When the request in flight was seen due, or -1 when free. */
  inFlight: number;
  ready: boolean;
}

export async function openLoop(opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const url = new URL(opts.url);
  const host = url.host;
  const port = Number(url.port || 80);
  const requests = (opts.requests ?? [{ method: 'GET', path: url.pathname + url.search, headers: {} }]).map((r) => requestBytes(r, host));
  const maxLagMs = opts.maxLagMs ?? DEFAULT_MAX_LAG_MS;
  const graceMs = opts.graceMs ?? 5_000;
  const total = Math.floor(opts.rate * opts.durationSec);
  const interval = 1000 / opts.rate;

  const latencies = new Samples();
  // The 10 slowest answers with their due times, kept sorted (a stall at the start and one mid-run differ).
  const slowest: { atMs: number; latencyMs: number }[] = [];
  let start = 0;
  const record = (due: number, latency: number): void => {
    latencies.push(latency);
    if (slowest.length === 10 && latency <= slowest[9]!.latencyMs) return;
    const entry = { atMs: +(due - start).toFixed(1), latencyMs: +latency.toFixed(3) };
    let i = slowest.length;
    while (i > 0 && slowest[i - 1]!.latencyMs < latency) i--;
    slowest.splice(i, 0, entry);
    if (slowest.length > 10) slowest.pop();
  };
  const lags = new Samples();
  let completed = 0;
  let errors = 0;
  let non2xx = 0;
  let next = 0; // rotation index into `requests`
  const queue: number[] = []; // times requests were seen due, waiting for a free connection
  let queueHead = 0;
  const free: Conn[] = [];
  const conns = new Set<Conn>();
  let finished = false;

  const dispatch = (): void => {
    while (queueHead < queue.length && free.length > 0) {
      // First in, first out: every connection stays in use. A stack would leave the bottom ones idle until
      // the server's keep-alive timeout closes them, racing the request that finally picks one.
      const c = free.shift()!;
      c.inFlight = queue[queueHead++]!;
      c.socket.write(requests[next++ % requests.length]!);
    }
    if (queueHead > 4096 && queueHead * 2 > queue.length) {
      queue.splice(0, queueHead);
      queueHead = 0;
    }
  };

  let priming: (() => void) | null = null;
  let primed = 0;
  const prime = (): Promise<void> =>
    new Promise((resolvePrime) => {
      const targets = free.splice(0); // every open connection, out of the free list until primed
      if (targets.length === 0) return resolvePrime();
      priming = () => {
        if (++primed === targets.length) {
          priming = null;
          resolvePrime();
        }
      };
      for (const c of targets) {
        c.inFlight = PRIMING;
        c.socket.write(requests[0]!);
      }
    });

  const open = (): Promise<void> =>
    new Promise((resolveOpen) => {
      const socket = connect(port, url.hostname);
      socket.setNoDelay(true);
      const c: Conn = { socket, parser: new ResponseParser(), inFlight: -1, ready: false };
      conns.add(c);
      socket.once('connect', () => {
        c.ready = true;
        free.push(c);
        resolveOpen();
        dispatch();
      });
      socket.on('data', (data) => {
        let answers: ParsedResponse[];
        try {
          answers = c.parser.push(data);
        } catch {
          socket.destroy();
          return;
        }
        for (const a of answers) {
          const now = performance.now();
          if (c.inFlight === PRIMING) {
            c.inFlight = -1;
            priming?.();
            if (a.close) {
              socket.destroy();
              return;
            }
            free.push(c);
            continue;
          }
          if (c.inFlight < 0) continue;
          record(c.inFlight, now - c.inFlight);
          completed++;
          if (a.status < 200 || a.status > 399) non2xx++;
          c.inFlight = -1;
          if (a.close) {
            socket.destroy();
            return;
          }
          free.push(c);
        }
        dispatch();
      });
      socket.on('error', () => {});
      socket.once('close', () => {
        conns.delete(c);
        const i = free.indexOf(c);
        if (i >= 0) free.splice(i, 1);
        if (c.inFlight >= 0) errors++;
        if (c.inFlight === PRIMING) priming?.(); // not waited for: its replacement joins the free ones
        if (!c.ready) {
          errors++;
          resolveOpen();
        }
        if (!finished) setTimeout(() => void open(), c.ready ? 0 : 100);
      });
    });

  await Promise.all(Array.from({ length: opts.connections }, open));
  // One request on every connection, answered before the schedule starts and not counted: the run measures
  // the target in its keep-alive steady state, with its client and upstream connections set up (a burst of
  // new connections at the first milliseconds is another measurement).
  await prime();

  const cpuBefore = process.cpuUsage();
  start = performance.now() + 20;
  let issued = 0;
  await new Promise<void>((resolveSchedule) => {
    const tick = (): void => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      while (issued < due) {
        lags.push(now - (start + issued * interval));
        queue.push(now);
        issued++;
      }
      dispatch();
      if (issued >= total) return resolveSchedule();
      // Node timers have a 1 ms resolution: at high rates each tick sends a small batch.
      setTimeout(tick, Math.max(0, start + issued * interval - performance.now()));
    };
    setTimeout(tick, Math.max(0, start - performance.now()));
  });

  // Wait for the answers still owed, then count what is left as unanswered (at the deadline's latency).
  const deadline = performance.now() + graceMs;
  const inFlight = () => queue.length - queueHead + [...conns].filter((c) => c.inFlight >= 0).length;
  while (inFlight() > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  finished = true;
  const end = performance.now();
  const cpu = process.cpuUsage(cpuBefore);
  let unanswered = 0;
  for (let i = queueHead; i < queue.length; i++, unanswered++) record(queue[i]!, end - queue[i]!);
  for (const c of conns) {
    if (c.inFlight >= 0) {
      record(c.inFlight, end - c.inFlight);
      unanswered++;
      c.inFlight = -1; // not an error as well
    }
    c.socket.destroy();
  }

  const lat = latencies.sorted();
  const lag = lags.sorted();
  const r3 = (v: number) => +v.toFixed(3);
  const lagP99 = quantile(lag, 0.99);
  const keptSchedule = lagP99 <= maxLagMs;
  let sum = 0;
  for (const v of lat) sum += v;
  return {
    url: opts.url,
    rate: opts.rate,
    connections: opts.connections,
    durationSec: opts.durationSec,
    scheduled: total,
    completed,
    achievedRate: Math.round(completed / opts.durationSec),
    errors,
    non2xx,
    unanswered,
    latency: {
      p50: r3(quantile(lat, 0.5)),
      p90: r3(quantile(lat, 0.9)),
      p99: r3(quantile(lat, 0.99)),
      p999: r3(quantile(lat, 0.999)),
      max: r3(lat[lat.length - 1] ?? NaN),
      mean: r3(sum / (lat.length || 1)),
    },
    generatorLag: { p50: r3(quantile(lag, 0.5)), p99: r3(lagP99), max: r3(lag[lag.length - 1] ?? NaN) },
    slowest,
    generatorCpu: +((cpu.user + cpu.system) / 1000 / (end - start)).toFixed(3),
    keptSchedule,
    ...(keptSchedule ? {} : { refusal: `the generator fell behind its own schedule (p99 lag ${r3(lagP99)} ms > ${maxLagMs} ms): it sent bursts, not the schedule` }),
  };
}

/** One line for a terminal. */
export function describeOpenLoop(r: OpenLoopResult): string {
  if (!r.keptSchedule) return `open loop at ${r.rate} req/s: NOT REPORTED, ${r.refusal}`;
  const l = r.latency;
  return `open loop at ${r.rate} req/s (achieved ${r.achievedRate}): p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p99.9 ${l.p999} max ${l.max} ms` +
    `${r.errors ? `, errors ${r.errors}` : ''}${r.non2xx ? `, non-2xx ${r.non2xx}` : ''}${r.unanswered ? `, unanswered ${r.unanswered}` : ''} (generator lag p99 ${r.generatorLag.p99} ms, CPU ${Math.round(r.generatorCpu * 100)}%)` +
    `; slowest due at ${r.slowest.slice(0, 3).map((x) => `${x.atMs} ms (${x.latencyMs} ms)`).join(', ')}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string' },
      connections: { type: 'string', default: '64' },
      duration: { type: 'string', default: '10' },
      'load-file': { type: 'string' },
      'max-lag-ms': { type: 'string', default: String(DEFAULT_MAX_LAG_MS) },
      out: { type: 'string' },
    },
  });
  if (!values.url || !values.rate) {
    process.stderr.write('usage: node bench/open-loop.ts --url URL --rate R [--connections C] [--duration S] [--load-file F.json] [--max-lag-ms 5] [--out F.json]\n');
    process.exit(2);
  }
  const result = await openLoop({
    url: values.url,
    rate: Number(values.rate),
    connections: Number(values.connections),
    durationSec: Number(values.duration),
    maxLagMs: Number(values['max-lag-ms']),
    ...(values['load-file'] ? { requests: JSON.parse(readFileSync(values['load-file'], 'utf8')) as PlainRequest[] } : {}),
  });
  if (values.out) writeFileSync(values.out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(describeOpenLoop(result) + '\n');
}
