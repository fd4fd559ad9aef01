// The wrk report parser on outputs captured from the real wrk 4.1 (`wrk -t1 -cN -dNs --latency`), and
// the translation of scenario loads (autocannon options) into wrk arguments and Lua scripts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { luaString, parseWrkOutput, plainRequests, wrkInvocation } from '../../bench/wrk.ts';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

describe('parseWrkOutput', () => {
  it('reads req/s, the latency distribution (us, ms) and the request count', () => {
    expect(parseWrkOutput(fixture('wrk-ok.txt'))).toEqual({
      rps: 26346.88, p50: 1.99, p75: 3.11, p90: 5.98, p99: 122.06, requests: 52852, seconds: 2.01, errors: 0, timeouts: 0, non2xx: 0,
    });
    const bad = parseWrkOutput(fixture('wrk-non2xx.txt'));
    expect(bad.p50).toBe(0.495);
    expect(bad.non2xx).toBe(22560);
  });

  it('sums the socket errors', () => {
    const r = parseWrkOutput(fixture('wrk-socket-errors.txt'));
    expect(r).toMatchObject({ rps: 11115.38, errors: 228, timeouts: 0, requests: 11184 });
  });

  it('refuses an output without a latency distribution or a rate', () => {
    const noLatency = fixture('wrk-ok.txt').replace(/ {2}Latency Distribution[\s\S]*?(?= {2}\d+ requests)/, '');
    expect(() => parseWrkOutput(noLatency)).toThrow(/50% latency/);
    expect(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused\n')).toThrow(/Requests\/sec/);
  });
});

describe('wrkInvocation', () => {
  it('passes static headers with -H and needs no script', () => {
    const inv = wrkInvocation('http://127.0.0.1:1/', { headers: { authorization: 'Bearer t', origin: 'https://a' } }, 64, 5);
    expect(inv).toEqual({ args: ['-t1', '-c64', '-d5s', '--latency', '-H', 'authorization: Bearer t', '-H', 'origin: https://a', 'http://127.0.0.1:1/'], script: null });
  });

  it('sets method and body in a static script', () => {
    const inv = wrkInvocation('http://h/', { method: 'POST', body: 'a"b\n' }, 8, 1);
    expect(inv.script).toBe('wrk.method = "POST"\nwrk.body = "a\\"b\\010"\n');
  });

  it('cycles through a request list, expanding setupRequest', () => {
    expect(plainRequests({ requests: [{ method: 'GET', path: '/limited' }, { path: '/ok' }] }).map((r) => r.path)).toEqual(['/limited', '/ok']);
    let n = 0;
    const expanded = plainRequests({ headers: { a: '1' }, requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, t: String(n++ % 3) } }) }] }, 6);
    expect(expanded.map((r) => r.headers)).toEqual([0, 1, 2, 0, 1, 2].map((t) => ({ a: '1', t: String(t) })));
    const inv = wrkInvocation('http://h/', { requests: [{ path: '/x' }, { path: '/y', headers: { k: 'v' } }] }, 8, 1);
    expect(inv.script).toContain('wrk.format("GET", "/y", { ["k"] = "v" })');
    expect(inv.script).toContain('function request()');
  });

  it('escapes Lua strings byte by byte', () => {
    expect(luaString('é\\')).toBe('"\\195\\169\\\\"');
  });
});
