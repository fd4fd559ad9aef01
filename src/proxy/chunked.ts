// A second reader of chunked request bodies (RFC 9112 §7.1), on the raw bytes, ahead of Node's parser.
// Node's parser accepts a chunk size with any number of leading zeros and extensions up to 16 KiB, and it
// hands a body over only as data arrives, so a chunk declared far larger than the route allows would be
// streamed until the limit is crossed. This reader sees each chunk-size line first: an absurd line
// (more than 16 hex digits, an extension over 256 bytes, anything but the grammar) is 400 invalid_chunk,
// and a declared size beyond what the route still allows is 413 at once, before the bytes of that chunk
// can be forwarded. It watches one body and then lets go of the socket.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { BodyRejectedError } from '../contract/context.ts';

const MAX_SIZE_DIGITS = 16;
const MAX_EXTENSION = 256;
const MAX_TRAILER_LINE = 8 * 1024;

/** Reader states. */
const S = {
  Size: 0,
  Ext: 1,
  SizeLf: 2,
  Data: 3,
  DataCr: 4,
  DataLf: 5,
  Trailer: 6,
  TrailerLf: 7,
  Done: 8,
} as const;

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

export class ChunkedBodyGuard {
  /** The refusal, once the body broke a rule; the forwarder sends nothing more of it. */
  problem: BodyRejectedError | null = null;
  #limit = Number.POSITIVE_INFINITY;
  #declared = 0;
  #state: number = S.Size;
  #digits = 0;
  #size = 0;
  #ext = 0;
  #semi = false;
  #remaining = 0;
  #lineLength = 0;
  #listeners: ((err: BodyRejectedError) => void)[] = [];
  #detach: (() => void) | null = null;

  /** Refuses the body (the listener could not find where it starts, say). */
  refuse(status: number, reason: string): void {
    if (this.problem === null) this.#fail(status, reason);
  }

  /** The route's body limit, once routed; a body already declared above it is refused now. */
  setLimit(limit: number): void {
    this.#limit = limit;
    if (this.problem === null && this.#declared > limit) this.#fail(413, 'body_too_large');
  }

  /** Called with the refusal (at once when there already is one). */
  onProblem(listener: (err: BodyRejectedError) => void): void {
    if (this.problem !== null) listener(this.problem);
    else this.#listeners.push(listener);
  }

  get done(): boolean {
    return this.#state === S.Done;
  }

  #fail(status: number, reason: string): void {
    this.problem = new BodyRejectedError(status, reason);
    this.#state = S.Done;
    this.#detach?.();
    for (const l of this.#listeners.splice(0)) l(this.problem);
  }

  /** Reads `buf` from `start`; returns the offset just after the body's end, or -1 while it goes on. */
  feed(buf: Buffer, start = 0): number {
    let i = start;
    const n = buf.length;
    while (i < n && this.#state !== S.Done) {
      switch (this.#state) {
        case S.Size: {
          const c = buf[i]!;
          const v = hex(c);
          if (v >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) return this.#end(400, 'invalid_chunk');
            this.#size = this.#size * 16 + v;
            i++;
            break;
          }
          if (this.#digits === 0) return this.#end(400, 'invalid_chunk');
          this.#state = S.Ext;
          break;
        }
        case S.Ext: {
          const c = buf[i]!;
          if (c === 0x0d) {
            this.#state = S.SizeLf;
          } else if (c === 0x0a || c < 0x09 || (c > 0x09 && c < 0x20) || c === 0x7f) {
            return this.#end(400, 'invalid_chunk');
          } else {
            // After the size only BWS, then `;` starts the extensions.
            if (!this.#semi) {
              if (c === 0x3b) this.#semi = true;
              else if (c !== 0x20 && c !== 0x09) return this.#end(400, 'invalid_chunk');
            }
            if (++this.#ext > MAX_EXTENSION) return this.#end(400, 'invalid_chunk');
          }
          i++;
          break;
        }
        case S.SizeLf: {
          if (buf[i] !== 0x0a) return this.#end(400, 'invalid_chunk');
          i++;
          const size = this.#size;
          this.#digits = 0;
          this.#size = 0;
          this.#ext = 0;
          this.#semi = false;
          if (size === 0) {
            this.#lineLength = 0;
            this.#state = S.Trailer;
            break;
          }
          this.#declared += size;
          if (this.#declared > this.#limit) return this.#end(413, 'body_too_large');
          this.#remaining = size;
          this.#state = S.Data;
          break;
        }
        case S.Data: {
          const take = Math.min(this.#remaining, n - i);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) this.#state = S.DataCr;
          break;
        }
        case S.DataCr:
          if (buf[i] !== 0x0d) return this.#end(400, 'invalid_chunk');
          i++;
          this.#state = S.DataLf;
          break;
        case S.DataLf:
          if (buf[i] !== 0x0a) return this.#end(400, 'invalid_chunk');
          i++;
          this.#state = S.Size;
          break;
        case S.Trailer: {
          const c = buf[i]!;
          i++;
          if (c === 0x0d) this.#state = S.TrailerLf;
          else if (++this.#lineLength > MAX_TRAILER_LINE) return this.#end(431, 'header_too_large');
          break;
        }
        case S.TrailerLf: {
          if (buf[i] !== 0x0a) return this.#end(400, 'invalid_chunk');
          i++;
          if (this.#lineLength === 0) {
            this.#state = S.Done;
            this.#detach?.();
            return i;
          }
          this.#lineLength = 0;
          this.#state = S.Trailer;
          break;
        }
      }
    }
    return this.#state === S.Done ? i : -1;
  }

  #end(status: number, reason: string): number {
    this.#fail(status, reason);
    return -1;
  }

  /** Reads what `socket` receives next, ahead of the HTTP parser, until the body ends. */
  watch(socket: Duplex): void {
    const onData = (d: Buffer) => {
      this.feed(d);
    };
    socket.prependListener('data', onData);
    this.#detach = () => {
      this.#detach = null;
      socket.off('data', onData);
    };
  }
}

const guards = new WeakMap<IncomingMessage, ChunkedBodyGuard>();

/** The guard of a chunked request body, if the listener set one. */
export function chunkGuardOf(req: object): ChunkedBodyGuard | undefined {
  return guards.get(req as IncomingMessage);
}

interface ParserWithBuffer {
  getCurrentBuffer?: () => Buffer;
}

/**
 * Starts guarding the chunked body of `req`, from the 'request' event (the parser has read the head and
 * not yet the bytes after it): the rest of the buffer being parsed is read now, the socket's next bytes as
 * they come. When the start of the body cannot be found in that buffer, the body is refused (400
 * invalid_chunk) rather than guessed about.
 */
export function guardChunkedBody(req: IncomingMessage): ChunkedBodyGuard {
  const guard = new ChunkedBodyGuard();
  guards.set(req, guard);
  const socket = req.socket;
  const buf = (socket as Duplex & { parser?: ParserWithBuffer }).parser?.getCurrentBuffer?.();
  const bodyStart = buf === undefined ? -1 : headEnd(buf, `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`);
  if (buf === undefined || bodyStart < 0) {
    guard.refuse(400, 'invalid_chunk');
    return guard;
  }
  const end = guard.feed(buf, bodyStart);
  if (end === -1 && guard.problem === null) guard.watch(socket);
  return guard;
}

/** Offset just after the request head that ends in `buf` (found by its request line), or -1. */
function headEnd(buf: Buffer, requestLine: string): number {
  const line = buf.indexOf(requestLine, 0, 'latin1');
  if (line >= 0) {
    const end = buf.indexOf('\r\n\r\n', line + requestLine.length - 2, 'latin1');
    return end < 0 ? -1 : end + 4;
  }
  // The head began in an earlier read: this buffer starts inside it, and its first blank line ends it
  // (possibly split across the two reads).
  if (buf[0] === 0x0a && buf[1] === 0x0d && buf[2] === 0x0a) return 3; // the earlier read ended with "\r"
  if (buf[0] === 0x0a) return 1; // ... with "\r\n\r"
  if (buf[0] === 0x0d && buf[1] === 0x0a) return 2; // ... with "\r\n"
  const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return end < 0 ? -1 : end + 4;
}
