// wrk as a load generator beside autocannon: wrk is C with an epoll loop, so it saturates its core later
// than autocannon (one Node thread) and the direct/nginx rows stop being capped by the load generator.
// This module turns a scenario's autocannon options into wrk arguments (plus a Lua script when the load is
// more than headers) and parses wrk's `--latency` report.
import type { Options } from 'autocannon';

export interface WrkResult {
  rps: number;
  /** Latency percentiles in milliseconds, from wrk's `Latency Distribution` (needs `--latency`). */
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  requests: number;
  seconds: number;
  /** Socket errors (connect + read + write + timeout). */
  errors: number;
  timeouts: number;
  /** wrk counts answers with a status above 399 ("Non-2xx or 3xx responses"). */
  non2xx: number;
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function millis(value: string, unit: string): number {
  const factor = TIME_UNITS[unit];
  if (factor === undefined) throw new Error(`wrk output: unknown time unit "${unit}"`);
  return +(Number(value) * factor).toFixed(3);
}

/** Parses the report of `wrk --latency` (wrk 4.x). Throws when a required line is missing. */
export function parseWrkOutput(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  if (!rps) throw new Error(`wrk output has no "Requests/sec:" line:\n${text}`);
  const percentile = (p: number): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(text);
    if (!m) throw new Error(`wrk output has no ${p}% latency line (was --latency given?):\n${text}`);
    return millis(m[1]!, m[2]!);
  };
  const total = /^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h),/m.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const [connectErr, readErr, writeErr, timeouts] = socket ? socket.slice(1, 5).map(Number) : [0, 0, 0, 0];
  return {
    rps: Number(rps[1]),
    p50: percentile(50),
    p75: percentile(75),
    p90: percentile(90),
    p99: percentile(99),
    requests: total ? Number(total[1]) : 0,
    seconds: total ? millis(total[2]!, total[3]!) / 1000 : 0,
    errors: connectErr! + readErr! + writeErr! + timeouts!,
    timeouts: timeouts!,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
  };
}

/** One request of a load, as plain data (what both wrk and the open-loop generator can send). */
export interface PlainRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/**
 * A scenario's autocannon options as a list of plain requests. autocannon `requests` with a
 * `setupRequest` function (distinct tokens in rotation) are expanded by calling it `expand` times in a row,
 * as autocannon would across the run; a scenario cycling through more distinct values than that repeats
 * sooner under wrk than under autocannon.
 */
export function plainRequests(load: Partial<Options>, expand = 10_000): PlainRequest[] {
  const base: PlainRequest = {
    method: load.method ?? 'GET',
    path: '/',
    headers: { ...((load.headers as Record<string, string> | undefined) ?? {}) },
    ...(load.body !== undefined ? { body: String(load.body) } : {}),
  };
  const list = load.requests;
  if (!list || list.length === 0) return [base];
  const dynamic = list.some((r) => typeof r.setupRequest === 'function');
  const out: PlainRequest[] = [];
  const rounds = dynamic ? Math.ceil(expand / list.length) : 1;
  for (let i = 0; i < rounds; i++) {
    for (const r of list) {
      let req: Record<string, unknown> = {
        method: r.method ?? base.method,
        path: r.path ?? base.path,
        headers: { ...base.headers, ...((r.headers as Record<string, string> | undefined) ?? {}) },
        body: r.body ?? base.body,
      };
      if (typeof r.setupRequest === 'function') req = (r.setupRequest as unknown as (q: Record<string, unknown>, c: unknown) => Record<string, unknown>)(req, {}) ?? req;
      out.push({
        method: String(req.method),
        path: String(req.path),
        headers: req.headers as Record<string, string>,
        ...(req.body !== undefined ? { body: String(req.body) } : {}),
      });
    }
  }
  return out;
}

/** A Lua string literal: ASCII printable as is, everything else as a decimal escape (LuaJIT has no \u). */
export function luaString(s: string): string {
  let out = '"';
  for (const byte of Buffer.from(s, 'utf8')) {
    if (byte === 0x22 || byte === 0x5c) out += '\\' + String.fromCharCode(byte);
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += '\\' + String(byte).padStart(3, '0');
  }
  return out + '"';
}

export interface WrkInvocation {
  args: string[];
  /** A Lua script to write to a file and pass with `-s`, when the load is more than static headers. */
  script: string | null;
}

/**
 * wrk arguments for a load: `-t1 -c<connections> -d<seconds>s --latency`, static headers as `-H`; a
 * different method or body becomes a static Lua script (wrk still sends the one prebuilt request), a list
 * of requests a `request()` function cycling through it (slower per request: a Lua call each).
 */
export function wrkInvocation(url: string, load: Partial<Options>, connections: number, seconds: number): WrkInvocation {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency'];
  const requests = plainRequests(load);
  let script: string | null = null;
  if (requests.length === 1) {
    const [r] = requests as [PlainRequest];
    for (const [k, v] of Object.entries(r.headers)) args.push('-H', `${k}: ${v}`);
    const lines: string[] = [];
    if (r.method !== 'GET') lines.push(`wrk.method = ${luaString(r.method)}`);
    if (r.body !== undefined) lines.push(`wrk.body = ${luaString(r.body)}`);
    if (r.path !== '/') lines.push(`wrk.path = ${luaString(r.path)}`);
    if (lines.length > 0) script = lines.join('\n') + '\n';
  } else {
    const entries = requests.map((r) => {
      const headers = Object.entries(r.headers).map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`).join(', ');
      return `  wrk.format(${luaString(r.method)}, ${luaString(r.path)}, { ${headers} }${r.body !== undefined ? `, ${luaString(r.body)}` : ''}),`;
    });
    // Formatted in init(): wrk sets the Host header it adds to every request only then.
    script = `local requests\nfunction init(args)\n requests = {\n${entries.join('\n')}\n }\nend\nlocal i = 0\nfunction request()\n  i = i % #requests + 1\n  return requests[i]\nend\n`;
  }
  return { args: [...args, url], script };
}
