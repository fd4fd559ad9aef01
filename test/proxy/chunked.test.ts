// The raw chunked-body reader: its grammar, its limits, and where it says the body ends.
import { describe, expect, it } from 'vitest';
import { ChunkedBodyGuard } from '../../src/proxy/chunked.ts';

function read(text: string, limit = Number.POSITIVE_INFINITY, split = 0): { guard: ChunkedBodyGuard; end: number } {
  const guard = new ChunkedBodyGuard();
  guard.setLimit(limit);
  const buf = Buffer.from(text, 'latin1');
  if (split === 0) return { guard, end: guard.feed(buf) };
  let end = -1;
  for (let i = 0; i < buf.length && end === -1 && guard.problem === null; i += split) end = guard.feed(buf.subarray(i, i + split));
  return { guard, end };
}

describe('chunked body guard', () => {
  it('reads a well-formed body to its end, in one piece or byte by byte', () => {
    const body = '5\r\nhello\r\n1a;name=value\r\n' + 'x'.repeat(26) + '\r\n0\r\nTrailer: t\r\n\r\n';
    for (const split of [0, 1, 3]) {
      const { guard, end } = read(body + 'GET /next', Number.POSITIVE_INFINITY, split);
      expect(guard.problem).toBeNull();
      expect(guard.done).toBe(true);
      if (split === 0) expect(end).toBe(body.length);
    }
  });

  it.each([
    ['17 digits (leading zeros)', '00000000000000005\r\nhello\r\n0\r\n\r\n'],
    ['100,000 leading zeros', '0'.repeat(100_000) + '5\r\nhello\r\n0\r\n\r\n'],
    ['an extension over 256 bytes', '5;' + 'a'.repeat(300) + '\r\nhello\r\n0\r\n\r\n'],
    ['no size', ';x\r\nhello\r\n0\r\n\r\n'],
    ['a bare LF after the size', '5\nhello\r\n0\r\n\r\n'],
    ['junk after the size', '5 x\r\nhello\r\n0\r\n\r\n'],
    ['data longer than declared', '5\r\nhello!\r\n0\r\n\r\n'],
    ['a control character in an extension', '5;a\x01b\r\nhello\r\n0\r\n\r\n'],
  ])('refuses %s with 400 invalid_chunk', (_name, text) => {
    const { guard } = read(text);
    expect(guard.problem?.status).toBe(400);
    expect(guard.problem?.reason).toBe('invalid_chunk');
  });

  it('refuses a declared size beyond the limit at the size line, before any of its data', () => {
    const { guard } = read('FFFFFFFF\r\n', 1024);
    expect(guard.problem?.status).toBe(413);
    expect(guard.problem?.reason).toBe('body_too_large');
  });

  it('counts the declared sizes together', () => {
    const { guard } = read('200\r\n' + 'a'.repeat(512) + '\r\n201\r\n', 1024);
    expect(guard.problem?.status).toBe(413);
  });

  it('refuses at setLimit when what was declared before routing is already too much', () => {
    const guard = new ChunkedBodyGuard();
    guard.feed(Buffer.from('800\r\nabc'));
    expect(guard.problem).toBeNull();
    let told = '';
    guard.onProblem((e) => (told = e.reason));
    guard.setLimit(1024);
    expect(guard.problem?.status).toBe(413);
    expect(told).toBe('body_too_large');
  });
});
