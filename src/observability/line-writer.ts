// The access log's writer. Lines are encoded straight into a preallocated buffer and written with one
// write(2) per batch, from the thread pool; the next batch fills a second buffer meanwhile. pino's
// sonic-boom concatenated each line onto a string, measured its UTF-8 length and wrote the string,
// about 3.3 µs of CPU per 266-byte line against 0.6 µs here (docs/architecture.md), and the access log
// writes one line per request.
//
// What it promises: lines are written whole and in order; a batch waits at most `flushMs`; a write that
// would block (a full pipe on stdout) is retried, and while the reader is stuck lines are buffered up to
// `maxBufferedBytes`, then dropped and counted, so a slow log never slows or grows the request path
// without bound. `drain` (shutdown) waits until everything is written; `flushSync` (a crash) writes what
// is buffered at once, blocking.
import { closeSync, fstatSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Bytes of one buffer: a batch is written when it holds `batchBytes`, long before the buffer is full. */
const BUFFER_BYTES = 64 * 1024;
/** Pause before retrying a write that would block, and how long flushSync keeps retrying in all. */
const RETRY_MS = 10;
const SYNC_RETRY_LIMIT_MS = 2_000;
/**
 * Writes to a pipe of at most this many bytes are atomic (POSIX PIPE_BUF, 4096 on Linux). Cluster
 * workers share their stdout pipe: a longer write could interleave with another worker's and cut lines.
 */
const PIPE_ATOMIC_BYTES = 4096;

export interface LineWriterOptions {
  /** Bytes gathered before a write. */
  batchBytes: number;
  /** Longest a line waits for its batch. */
  flushMs: number;
  /** Bytes buffered (the reader not keeping up) above which lines are dropped. */
  maxBufferedBytes: number;
  /** Called once per dropped line. */
  onDrop: () => void;
}

interface Chunk {
  buf: Buffer;
  len: number;
  lines: number;
}

export class LineWriter {
  readonly #fd: number;
  readonly #ownsFd: boolean;
  readonly #o: LineWriterOptions;
  /** Longest single write: whole lines up to PIPE_ATOMIC_BYTES on a pipe or socket, anything on a file. */
  readonly #maxWrite: number;
  #current: Chunk = { buf: Buffer.allocUnsafe(BUFFER_BYTES), len: 0, lines: 0 };
  /** Filled chunks waiting for the write in flight, oldest first. */
  readonly #full: Chunk[] = [];
  #fullBytes = 0;
  #spare: Buffer | null = null;
  /** The chunk being written, and how much of it is already out. */
  #inFlight: Chunk | null = null;
  #written = 0;
  #retry: NodeJS.Timeout | null = null;
  readonly #timer: NodeJS.Timeout;
  #closed = false;
  #drained: (() => void)[] = [];

  /** `target`: a file (created with its directory, appended to), or an open descriptor (1 = stdout). */
  constructor(target: string | number, options: LineWriterOptions) {
    this.#o = options;
    if (typeof target === 'number') {
      this.#fd = target;
      this.#ownsFd = false;
    } else {
      try {
        mkdirSync(dirname(target), { recursive: true });
        this.#fd = openSync(target, 'a');
      } catch (err) {
        throw new Error(`cannot open log file ${target}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      this.#ownsFd = true;
    }
    const st = fstatSync(this.#fd);
    this.#maxWrite = st.isFIFO() || st.isSocket() ? PIPE_ATOMIC_BYTES : Infinity;
    this.#timer = setInterval(() => {
      if (this.#inFlight === null && this.#current.len > 0) this.#next();
    }, options.flushMs);
    this.#timer.unref();
  }

  /** Bytes accepted and not yet written. */
  get buffered(): number {
    return this.#current.len + this.#fullBytes + (this.#inFlight === null ? 0 : this.#inFlight.len - this.#written);
  }

  write(line: string): void {
    if (this.#closed) return;
    // A UTF-16 code unit is at most 3 bytes of UTF-8: the bound needs no length pass over the line.
    const most = line.length * 3;
    let cur = this.#current;
    if (cur.len + most > cur.buf.length) {
      if (this.buffered + most > this.#o.maxBufferedBytes) {
        this.#o.onDrop();
        return;
      }
      if (cur.len > 0) this.#seal();
      cur = this.#current;
      if (most > cur.buf.length) {
        // A line longer than a buffer gets a chunk of its own.
        const buf = Buffer.from(line, 'utf8');
        this.#full.push({ buf, len: buf.length, lines: 1 });
        this.#fullBytes += buf.length;
        if (this.#inFlight === null) this.#next();
        return;
      }
    }
    cur.len += cur.buf.write(line, cur.len, 'utf8');
    cur.lines++;
    if (this.#inFlight === null && (cur.len >= this.#o.batchBytes || this.#full.length > 0)) this.#next();
  }

  /** Moves the current chunk to the queue of full ones and starts an empty one. */
  #seal(): void {
    this.#full.push(this.#current);
    this.#fullBytes += this.#current.len;
    this.#current = { buf: this.#spare ?? Buffer.allocUnsafe(BUFFER_BYTES), len: 0, lines: 0 };
    this.#spare = null;
  }

  /** Starts writing the oldest chunk, when nothing is in flight. */
  #next(): void {
    if (this.#inFlight !== null || this.#retry !== null) return;
    if (this.#full.length === 0) {
      if (this.#current.len === 0) return;
      this.#seal();
    }
    const chunk = this.#full.shift()!;
    this.#fullBytes -= chunk.len;
    this.#inFlight = chunk;
    this.#written = 0;
    this.#send();
  }

  /** Bytes of the next write from `at`: all of them, or on a pipe the whole lines that fit one atomic write. */
  #span(buf: Buffer, at: number, end: number): number {
    if (end - at <= this.#maxWrite) return end - at;
    const cut = buf.lastIndexOf(0x0a, at + this.#maxWrite - 1);
    if (cut >= at) return cut + 1 - at;
    // A line longer than an atomic write goes whole, by itself (the buffer past `end` is stale bytes).
    const nl = buf.indexOf(0x0a, at);
    return nl !== -1 && nl < end ? nl + 1 - at : end - at;
  }

  #send(): void {
    const chunk = this.#inFlight!;
    write(this.#fd, chunk.buf, this.#written, this.#span(chunk.buf, this.#written, chunk.len), null, (err, n) => {
      if (this.#inFlight !== chunk) return; // flushSync took over
      if (err) {
        if (err.code === 'EAGAIN' && !this.#closed) {
          this.#retry = setTimeout(() => {
            this.#retry = null;
            this.#send();
          }, RETRY_MS);
          return;
        }
        // The target is gone (disk full, closed pipe): this chunk's lines are lost; count them.
        for (let i = 0; i < chunk.lines; i++) this.#o.onDrop();
        n = chunk.len - this.#written;
      }
      this.#written += n;
      if (this.#written < chunk.len) {
        this.#send(); // a partial write (a pipe): the rest of the chunk, before anything newer
        return;
      }
      this.#done(chunk);
    });
  }

  #done(chunk: Chunk): void {
    this.#inFlight = null;
    if (chunk.buf.length === BUFFER_BYTES) this.#spare = chunk.buf;
    const draining = this.#drained.length > 0;
    if (this.#full.length > 0 || this.#current.len >= this.#o.batchBytes || (draining && this.#current.len > 0)) this.#next();
    else if (draining) for (const resolve of this.#drained.splice(0)) resolve();
  }

  /** Resolves once every line accepted so far is written (a shutdown's last step before flushSync). */
  drain(): Promise<void> {
    if (this.buffered === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained.push(resolve);
      this.#next();
    });
  }

  /**
   * Writes what is buffered now, blocking, right before the process exits. A chunk whose asynchronous
   * write is in flight is left to it (writing it again could duplicate its lines); `drain` first, where
   * there is time, leaves nothing in flight.
   */
  flushSync(): void {
    if (this.#retry !== null) {
      clearTimeout(this.#retry);
      this.#retry = null;
      // A retry pending means the in-flight chunk's write did not happen: it is written here.
      if (this.#inFlight !== null) this.#full.unshift({ ...this.#inFlight, buf: this.#inFlight.buf.subarray(this.#written), len: this.#inFlight.len - this.#written });
      this.#inFlight = null;
    }
    const chunks: { buf: Buffer; from: number; to: number }[] = [];
    for (const c of this.#full) chunks.push({ buf: c.buf, from: 0, to: c.len });
    if (this.#current.len > 0) chunks.push({ buf: this.#current.buf, from: 0, to: this.#current.len });
    this.#full.length = 0;
    this.#fullBytes = 0;
    this.#current = { buf: this.#current.buf, len: 0, lines: 0 };
    const deadline = Date.now() + SYNC_RETRY_LIMIT_MS;
    for (const c of chunks) {
      let at = c.from;
      while (at < c.to) {
        try {
          at += writeSync(this.#fd, c.buf, at, this.#span(c.buf, at, c.to));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) return;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        }
      }
    }
  }

  /** Writes everything, then closes a file it opened. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.drain();
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#ownsFd) closeSync(this.#fd);
  }
}
