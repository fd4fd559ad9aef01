// withDeadline against a real socket: a reply that came in time but was read late wins over the timer; a
// reply that never comes times out.
import { createServer, connect, type Server, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeadlineError, withDeadline } from '../../src/ratelimit/deadline.ts';

let server: Server;
let port = 0;
/** Called when the server has written its echo (it is then in the client's socket buffer). */
let onEchoed: (() => void) | null = null;
beforeAll(async () => {
  // Echoes every line back at once, except "silence". The server runs in this process, so a test waits
  // until the echo is written before it makes the loop busy (else the busy loop would stall the server too).
  server = createServer((s) => {
    s.on('error', () => {}); // the tests close their end whenever they are done (a reset is expected)
    s.on('data', (d) => {
      if (String(d).startsWith('silence')) return;
      s.write(d, () => onEchoed?.());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Sends `line`; resolves once the server answered (unless it stays silent), with the reply still unread. */
function ask(line: string): Promise<{ reply: Promise<string>; close: () => void }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.on('error', () => {});
      const reply = new Promise<string>((r) => socket.once('data', (d) => r(String(d))));
      const done = { reply, close: () => socket.destroy() };
      onEchoed = () => resolve(done);
      socket.write(line);
      if (line.startsWith('silence')) resolve(done);
    });
  });
}

describe('withDeadline', () => {
  it('resolves with a reply that arrived before the deadline though the loop was busy past it', async () => {
    const { reply, close } = await ask('ping\n');
    const answer = withDeadline(reply, 50);
    const t = performance.now();
    while (performance.now() - t < 250); // the echo waits in the socket; the 50 ms timer is long overdue
    await expect(answer).resolves.toBe('ping\n');
    close();
  });

  it('a plain timer in its place fails that same reply (why the check waits for a poll phase)', async () => {
    const { reply, close } = await ask('ping\n');
    const naive = Promise.race([reply, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 50))]);
    const t = performance.now();
    while (performance.now() - t < 250);
    await expect(naive).rejects.toThrow('timed out');
    close();
  });

  it('rejects with a DeadlineError when no reply comes, and passes errors through', async () => {
    const { reply, close } = await ask('silence\n');
    const t0 = performance.now();
    await expect(withDeadline(reply, 50)).rejects.toBeInstanceOf(DeadlineError);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(49);
    close();
    await expect(withDeadline(Promise.reject(new Error('refused')), 50)).rejects.toThrow('refused');
  });
});
