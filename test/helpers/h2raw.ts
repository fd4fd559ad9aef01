// Raw HTTP/2 over TLS: frames that well-behaved clients (node:http2, curl) refuse to send. The HPACK
// encoder writes literals only (no Huffman, optional incremental indexing), which is all an attacker
// needs and lets a test put any byte into a field name or value.
import { connect, type TLSSocket } from 'node:tls';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 11 } as const;

function hpackInt(n: number, prefixBits: number, firstByte: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (n < max) return [firstByte | n];
  const out = [firstByte | max];
  n -= max;
  while (n >= 128) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** One header field as a literal with a literal name (bytes taken as latin1). */
export function literal(name: string, value: string, index = false): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.from([...(index ? [0x40] : [0x00]), ...hpackInt(n.length, 7, 0), ...n, ...hpackInt(v.length, 7, 0), ...v]);
}

/** A reference to an entry of the (static or dynamic) table: index 62 is the newest dynamic entry. */
export function indexed(index: number): Buffer {
  return Buffer.from(hpackInt(index, 7, 0x80));
}

export function headerBlock(fields: [string, string][]): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)));
}

export function requestBlock(authority: string, path = '/', method = 'GET', extra: [string, string][] = []): Buffer {
  return headerBlock([[':method', method], [':scheme', 'https'], [':path', path], [':authority', authority], ...extra]);
}

export function frame(type: number, flags: number, stream: number, payload: Buffer | number[] = []): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(9);
  head.writeUIntBE(body.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, body]);
}

export const rstStream = (stream: number, code: number = ERROR.CANCEL) => frame(FRAME.RST_STREAM, 0, stream, u32(code));
export const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };

export interface ReceivedFrame { type: number; flags: number; stream: number; payload: Buffer }

export interface RawH2 {
  socket: TLSSocket;
  frames: ReceivedFrame[];
  send(...frames: Buffer[]): boolean;
  /** Resolves once a frame matching `test` arrived (or null when the connection closed first). */
  waitFor(test: (f: ReceivedFrame) => boolean, timeoutMs?: number): Promise<ReceivedFrame | null>;
  closed: Promise<void>;
  isClosed(): boolean;
  /** The error code of the GOAWAY received, if any. */
  goaway(): number | undefined;
  /** RST_STREAM codes received, by stream. */
  resets(): Map<number, number>;
  close(): void;
}

/** Opens a TLS connection with ALPN h2, sends the preface and an empty SETTINGS frame. */
export function rawH2(url: string, settings: Buffer = Buffer.alloc(0)): Promise<RawH2> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), servername: 'localhost', ALPNProtocols: ['h2'], rejectUnauthorized: false });
    const frames: ReceivedFrame[] = [];
    const waiters = new Set<{ test: (f: ReceivedFrame) => boolean; done: (f: ReceivedFrame | null) => void }>();
    let buf: Buffer = Buffer.alloc(0);
    let closed = false;
    let closedResolve!: () => void;
    const closedP = new Promise<void>((r) => (closedResolve = r));
    socket.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) };
        buf = buf.subarray(9 + len);
        frames.push(f);
        // Acknowledge the server's SETTINGS, as a client must.
        if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK) && !socket.destroyed) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        for (const w of waiters) if (w.test(f)) { waiters.delete(w); w.done(f); }
      }
    });
    const onClose = () => {
      closed = true;
      for (const w of waiters) w.done(null);
      waiters.clear();
      closedResolve();
    };
    socket.on('close', onClose);
    socket.on('error', () => { /* a reset connection is an outcome the tests read from `closed` */ });
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') return reject(new Error(`ALPN gave ${String(socket.alpnProtocol)}`));
      socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      socket.write(frame(FRAME.SETTINGS, 0, 0, settings));
      resolve({
        socket,
        frames,
        send: (...fs) => (socket.destroyed ? false : socket.write(Buffer.concat(fs))),
        waitFor: (test, timeoutMs = 10_000) => {
          const seen = frames.find(test);
          if (seen) return Promise.resolve(seen);
          if (closed) return Promise.resolve(null);
          return new Promise((done) => {
            const w = { test, done: (f: ReceivedFrame | null) => { clearTimeout(t); done(f); } };
            const t = setTimeout(() => { waiters.delete(w); done(null); }, timeoutMs);
            waiters.add(w);
          });
        },
        closed: closedP,
        isClosed: () => closed,
        goaway: () => { const g = frames.find((f) => f.type === FRAME.GOAWAY); return g ? g.payload.readUInt32BE(4) : undefined; },
        resets: () => new Map(frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => [f.stream, f.payload.readUInt32BE(0)])),
        close: () => socket.destroy(),
      });
    });
    socket.once('error', reject);
  });
}

/** The `:status` of a response HEADERS frame encoded by Node's HPACK (indexed or literal with name index 8). */
export function statusOf(f: ReceivedFrame): number | undefined {
  const p = f.payload;
  const b = p[0]!;
  const table: Record<number, number> = { 0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500 };
  if (table[b] !== undefined) return table[b];
  // Literal with name index 8 (`:status`): 0x08 / 0x48 / 0x18, then a 3-byte non-Huffman value.
  if ((b & 0x0f) === 8 || (b & 0x3f) === 8) {
    const len = p[1]! & 0x7f;
    if (!(p[1]! & 0x80) && len === 3) return Number(p.subarray(2, 5).toString('latin1'));
  }
  return undefined;
}
