// The open-loop generator: its response parser on split and joined bytes, and a real run against a real
// node:http server, where a stalled answer must count for every request scheduled behind it.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLoop, quantile, requestBytes, ResponseParser } from '../../bench/open-loop.ts';

describe('ResponseParser', () => {
  const two = Buffer.from(
    'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello' +
      'HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n',
  );

  it('reads Content-Length and chunked answers in one push', () => {
    expect(new ResponseParser().push(two)).toEqual([{ status: 200, close: false }, { status: 502, close: true }]);
  });

  it('reads them byte by byte', () => {
    const p = new ResponseParser();
    const got = [];
    for (let i = 0; i < two.length; i++) got.push(...p.push(two.subarray(i, i + 1)));
    expect(got).toEqual([{ status: 200, close: false }, { status: 502, close: true }]);
  });

  it('skips 100 Continue, reads bodiless 204, treats HTTP/1.0 as closing', () => {
    const p = new ResponseParser();
    expect(p.push(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n'))).toEqual([
      { status: 204, close: false },
      { status: 200, close: true },
    ]);
  });

  it('refuses a body delimited by the connection closing', () => {
    expect(() => new ResponseParser().push(Buffer.from('HTTP/1.1 200 OK\r\n\r\nbody'))).toThrow(/read-until-close/);
  });
});

describe('requestBytes and quantile', () => {
  it('adds host and content-length', () => {
    expect(requestBytes({ method: 'POST', path: '/x', headers: { a: 'b' }, body: 'hi' }, 'h:1').toString()).toBe(
      'POST /x HTTP/1.1\r\nhost: h:1\r\na: b\r\ncontent-length: 2\r\n\r\nhi',
    );
  });
  it('takes the nearest rank', () => {
    const s = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect([quantile(s, 0.5), quantile(s, 0.99), quantile(s, 0.999), quantile(s, 1)]).toEqual([500, 990, 999, 1000]);
  });
});

describe('openLoop against a real server', () => {
  let server: Server;
  let url = '';
  let stalled = false;
  const seen: string[] = [];
  const sockets = new Set<unknown>();
  beforeAll(async () => {
    server = createServer((req, res) => {
      sockets.add(req.socket);
      seen.push(`${req.method} ${req.url} ${req.headers['x-n']}`);
      const answer = () => {
        if (req.url === '/chunked') {
          res.write('a');
          res.end('b');
        } else {
          res.writeHead(req.url === '/fail' ? 500 : 200, { 'content-length': '2' });
          res.end('ok');
        }
      };
      // The tenth request stalls 300 ms: with one connection every request due meanwhile waits for it.
      if (req.url === '/stall' && seen.length === 10 && !stalled) {
        stalled = true;
        setTimeout(answer, 300);
      } else answer();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('sends the schedule in rotation and counts non-2xx answers', async () => {
    seen.length = 0;
    const r = await openLoop({
      url,
      rate: 200,
      connections: 4,
      durationSec: 0.5,
      maxLagMs: 1000,
      requests: [
        { method: 'GET', path: '/chunked', headers: { 'x-n': '1' } },
        { method: 'POST', path: '/fail', headers: { 'x-n': '2' }, body: 'x' },
      ],
    });
    expect(r).toMatchObject({ scheduled: 100, completed: 100, non2xx: 50, errors: 0, unanswered: 0, keptSchedule: true });
    // First one uncounted request per connection (priming), then the schedule in rotation.
    expect(seen.slice(0, 6)).toEqual(['GET /chunked 1', 'GET /chunked 1', 'GET /chunked 1', 'GET /chunked 1', 'GET /chunked 1', 'POST /fail 2']);
    expect(seen).toHaveLength(104);
  });

  it('uses every connection in turn (none left idle for the server to time out)', async () => {
    sockets.clear();
    const r = await openLoop({ url, rate: 100, connections: 8, durationSec: 0.3, maxLagMs: 1000 });
    expect(r.completed).toBe(30);
    expect(sockets.size).toBe(8);
  });

  it('counts a stall for every request scheduled behind it (no coordinated omission)', async () => {
    seen.length = 0;
    const r = await openLoop({ url: url + '/stall', rate: 100, connections: 1, durationSec: 1, maxLagMs: 1000 });
    expect(r.completed).toBe(100);
    // About 30 requests were due during the 300 ms stall, waiting 300, 290, ... ms: the 90th percentile is
    // among them. A closed loop would have counted one slow request.
    expect(r.latency.p90).toBeGreaterThanOrEqual(100);
    expect(r.latency.max).toBeGreaterThanOrEqual(290);
  });

  it("keeps its own lag out of the latency: a stall of the generator is not the target's", async () => {
    const BLOCK_MS = 200;
    // The generator (this process) stops for BLOCK_MS; the ~20 requests due meanwhile go out when it wakes.
    setTimeout(() => {
      const t = performance.now();
      while (performance.now() - t < BLOCK_MS);
    }, 300);
    const r = await openLoop({ url, rate: 100, connections: 4, durationSec: 1, maxLagMs: 1000 });
    expect(r.completed).toBe(100);
    expect(r.generatorLag.max).toBeGreaterThanOrEqual(BLOCK_MS * 0.9);
    // Measured from their intended times, those 20 would put the 90th percentile near BLOCK_MS / 2.
    expect(r.latency.p90).toBeLessThan(BLOCK_MS / 4);
  });

  it('refuses to report when it cannot keep its schedule', async () => {
    const r = await openLoop({ url, rate: 100, connections: 1, durationSec: 0.3, maxLagMs: -1 });
    expect(r.keptSchedule).toBe(false);
    expect(r.refusal).toMatch(/fell behind its own schedule/);
  });
});
