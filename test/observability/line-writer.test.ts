// The access log's batched writer against real files and a real pipe whose reader stalls: lines whole
// and in order, the flush interval, retry of writes that would block, bounded buffering with counted
// drops, and the shutdown paths (drain, flushSync).
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LineWriter, type LineWriterOptions } from '../../src/observability/line-writer.ts';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const options = (over: Partial<LineWriterOptions> = {}): LineWriterOptions => ({ batchBytes: 8192, flushMs: 50, maxBufferedBytes: 16 << 20, onDrop: () => {}, ...over });
const line = (i: number) => `{"n":${i},"path":"/ünïcødé/${'x'.repeat(i % 300)}"}\n`;

async function until<T>(check: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('LineWriter', () => {
  it('writes every line whole and in order across many batches, multi-byte text and an oversized line included', async () => {
    const file = join(dir, 'nested', 'a.log');
    const w = new LineWriter(file, options());
    const expected: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const l = i === 777 ? `{"big":"${'y'.repeat(200_000)}"}\n` : line(i);
      expected.push(l);
      w.write(l);
      if (i % 500 === 0) await new Promise(setImmediate); // let batches complete in between, as requests do
    }
    await w.close();
    expect(readFileSync(file, 'utf8')).toBe(expected.join(''));
  });

  it('writes a lone line within the flush interval, with no further writes to push it', async () => {
    const file = join(dir, 'b.log');
    const w = new LineWriter(file, options({ batchBytes: 1 << 20 }));
    w.write('{"only":1}\n');
    expect(readFileSync(file, 'utf8')).toBe(''); // batched, not written at once
    await until(() => (readFileSync(file, 'utf8') === '{"only":1}\n' ? true : undefined), 'the timer flush');
    await w.close();
  });

  it('retries writes a full pipe refuses, drops and counts lines past the buffer bound, and delivers the rest in order', async () => {
    const fifo = join(dir, 'pipe');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // Read-write and non-blocking: a pipe nobody reads yet, whose writes fail with EAGAIN once it is full.
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    let dropped = 0;
    const w = new LineWriter(fd, options({ maxBufferedBytes: 256 * 1024, onDrop: () => dropped++ }));
    const sent: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const l = line(i);
      const before = dropped;
      w.write(l);
      if (dropped === before) sent.push(l);
      if (i % 200 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    expect(dropped).toBeGreaterThan(0); // the pipe holds 64 KiB and the buffer 256 KiB: most could not wait
    expect(w.buffered).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    // The reader comes back: everything accepted arrives, whole and in order.
    const want = Buffer.byteLength(sent.join(''));
    const got: Buffer[] = [];
    let total = 0;
    const buf = Buffer.alloc(65536);
    await until(() => {
      for (;;) {
        let n = 0;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        }
        if (n <= 0) break;
        got.push(Buffer.from(buf.subarray(0, n)));
        total += n;
      }
      return total >= want ? true : undefined;
    }, 'the buffered lines');
    expect(Buffer.concat(got).toString('utf8')).toBe(sent.join(''));
    await w.close();
    closeSync(fd);
  });

  it('keeps lines whole when two writers share one pipe (cluster workers on one stdout)', async () => {
    const fifo = join(dir, 'shared-pipe');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const writers = [new LineWriter(fd, options()), new LineWriter(fd, options())];
    const perWriter = 3000;
    const text = (w: number, i: number) => `{"w":${w},"i":${i},"pad":"${'p'.repeat((i * 37) % 700)}"}\n`;
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(65536);
    // The reader drains a little at a time, so the pipe is often full and writes are refused or cut short.
    const drainSome = () => {
      try {
        const n = readSync(fd, buf, 0, 1000, null);
        if (n > 0) chunks.push(Buffer.from(buf.subarray(0, n)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      }
    };
    for (let i = 0; i < perWriter; i++) {
      writers[0]!.write(text(0, i));
      writers[1]!.write(text(1, i));
      if (i % 20 === 0) {
        drainSome();
        await new Promise((r) => setTimeout(r, 0));
      }
    }
    const expectedLines = 2 * perWriter;
    await until(() => {
      for (let k = 0; k < 1000; k++) drainSome();
      return Buffer.concat(chunks).toString('utf8').split('\n').length - 1 >= expectedLines ? true : undefined;
    }, 'both writers\' lines');
    const lines = Buffer.concat(chunks).toString('utf8').split('\n').slice(0, -1);
    expect(lines).toHaveLength(expectedLines);
    const next = [0, 0];
    for (const l of lines) {
      const { w, i } = JSON.parse(l) as { w: number; i: number }; // a cut line would not parse
      expect(i).toBe(next[w]!++); // and each writer's lines stay in order
    }
    for (const w of writers) await w.close();
    closeSync(fd);
  });

  it('drain resolves once everything is written; flushSync writes what is buffered at once', async () => {
    const file = join(dir, 'c.log');
    const w = new LineWriter(file, options({ batchBytes: 1 << 20, flushMs: 60_000 }));
    for (let i = 0; i < 100; i++) w.write(line(i));
    await w.drain();
    expect(w.buffered).toBe(0);
    expect(readFileSync(file, 'utf8').split('\n')).toHaveLength(101);
    for (let i = 100; i < 200; i++) w.write(line(i));
    w.flushSync();
    expect(readFileSync(file, 'utf8')).toBe(Array.from({ length: 200 }, (_, i) => line(i)).join(''));
    await w.close();
  });

  it('names the file and the error when the log cannot be opened', () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, '');
    expect(() => new LineWriter(join(file, 'access.log'), options())).toThrow(new RegExp(`cannot open log file ${file}/access\\.log: E[A-Z]+$`));
  });
});
