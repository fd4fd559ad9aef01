// A request body whose first bytes a filter must see before the request is forwarded (rate-limit keys
// from a form or JSON field). The prefix is read once, up to a cap, from the same size-limited (and
// chunk-guarded) stream the forwarder would send; the forwarder then sends those bytes unchanged and
// streams the rest, so the upstream receives the body byte for byte. Memory: the cap plus one chunk.
import type { BodyPrefix, BodyReader } from '../contract/context.ts';

export class RequestBody implements BodyReader {
  readonly #source: AsyncIterator<Buffer>;
  /** Called once before the first byte is read: answers `Expect: 100-continue`, which the client awaits. */
  readonly #beforeRead: () => void;
  #reading: Promise<BodyPrefix> | null = null;
  #held: Buffer[] = [];
  #ended = false;
  /** A failure of the source while the prefix was read (body too large, chunk refused, client gone). */
  #error: unknown = null;
  #streamed = false;
  current: BodyPrefix | null = null;
  started = false;

  constructor(source: AsyncIterable<Buffer>, beforeRead: () => void) {
    this.#source = source[Symbol.asyncIterator]();
    this.#beforeRead = beforeRead;
  }

  prefix(max: number): Promise<BodyPrefix> {
    return (this.#reading ??= this.#read(max));
  }

  async #read(max: number): Promise<BodyPrefix> {
    this.started = true;
    this.#beforeRead();
    let total = 0;
    try {
      // One byte past the cap tells a body of exactly `max` bytes from a longer one.
      while (total <= max) {
        const next = await this.#source.next();
        if (next.done === true) {
          this.#ended = true;
          break;
        }
        this.#held.push(next.value);
        total += next.value.length;
      }
    } catch (err) {
      // Not this reader's to answer: the forwarder meets the same error first thing and answers it as
      // it always does (413, 400, 499); the filter sees an incomplete body.
      this.#error = err;
    }
    const held = this.#held;
    const bytes = held.length === 1 ? held[0]! : Buffer.concat(held);
    this.current = { bytes: this.#error === null && this.#ended ? bytes : bytes.subarray(0, Math.min(max, bytes.length)), complete: this.#error === null && this.#ended };
    return this.current;
  }

  /** The whole body for the upstream: the bytes read ahead, then the rest of the source. Once. */
  async *stream(): AsyncGenerator<Buffer> {
    if (this.#streamed) throw new Error('request body streamed twice');
    this.#streamed = true;
    if (this.#reading !== null) await this.#reading;
    if (this.#error !== null) throw this.#error; // before any byte: the upstream gets nothing of it
    const held = this.#held;
    this.#held = [];
    for (const chunk of held) yield chunk;
    if (this.#ended) return;
    try {
      for (;;) {
        const next = await this.#source.next();
        if (next.done === true) return;
        yield next.value;
      }
    } finally {
      // An aborted upstream request stops here: let the source (and its listeners) go as well.
      void this.#source.return?.();
    }
  }
}
