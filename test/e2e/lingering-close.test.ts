// Regression: a client still writing a body the gateway already refused must read the refusal. The gateway
// used to destroy the connection right after its 413, with the client's body bytes unread; the kernel
// answered them with a TCP RST, and the client (still writing) got EPIPE/ECONNRESET instead of the answer
// (test/e2e/seeds/001 "uploads", about 1 run in 3 on a busy machine). Now the connection closes like
// nginx's lingering_close: FIN after the answer, the client's remaining bytes read and dropped.
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

let upstream: RecordingUpstream;
let gw: RunningGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(`
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
log: { access: off }
upstreams: { app: { url: "${upstream.url}" } }
routes:
  - { match: { path_prefix: / }, upstream: app, max_body_size: 1MiB }
`);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

/** Sends `head` then 3 MiB of body as fast as the socket takes it; resolves with what was read and how it ended. */
function upload(head: string, chunked: boolean): Promise<{ answer: string; ending: string }> {
  return new Promise((resolve) => {
    const { hostname, port } = new URL(gw.url);
    const socket = connect({ host: hostname, port: Number(port) });
    let answer = '';
    let done = false;
    const finish = (ending: string) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ answer, ending });
    };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (answer += d));
    socket.on('end', () => finish('end')); // the gateway's FIN, after its answer
    socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? 'error'));
    socket.write(head);
    const chunk = Buffer.alloc(128 * 1024, 0x61);
    let sent = 0;
    const pump = () => {
      while (!socket.destroyed && !socket.writableEnded && sent < 3 * 1024 * 1024) {
        sent += chunk.length;
        const ok = chunked ? socket.write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])) : socket.write(chunk);
        if (!ok) return void socket.once('drain', pump);
      }
    };
    pump();
  });
}

it.each([
  ['chunked, refused once it passes the limit', 'Transfer-Encoding: chunked', true],
  ['Content-Length over the limit, refused before reading', `Content-Length: ${3 * 1024 * 1024}`, false],
] as const)('%s: the client reads the 413 however fast it writes, then the gateway closes', async (_name, framing, chunked) => {
  const outcomes: string[] = [];
  for (let i = 0; i < 25; i++) {
    const r = await upload(`POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\n${framing}\r\n\r\n`, chunked);
    outcomes.push(`${r.answer.slice(0, 12)} ${/"reason":"([a-z_]+)"/.exec(r.answer)?.[1]} ${/connection: close/i.test(r.answer)} ${r.ending}`);
  }
  expect(outcomes).toEqual(Array.from({ length: 25 }, () => 'HTTP/1.1 413 body_too_large true end'));
  expect(upstream.received.filter((r) => r.body.length > 1024 * 1024)).toEqual([]);
});
