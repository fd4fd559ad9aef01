// A strict JSON reader for token headers and payloads. JSON.parse keeps the last of two equal keys, while
// other parsers keep the first: a token with `{"sub":"alice","sub":"admin"}` could mean one thing to the
// gateway and another to the app behind it. Here a duplicate key, at any depth, is an error.

export class StrictJsonError extends Error {
  readonly code: 'duplicate_key' | 'syntax';
  constructor(code: 'duplicate_key' | 'syntax') {
    super(code);
    this.code = code;
  }
}

const MAX_DEPTH = 32;

/** Parses `text` like JSON.parse, refusing duplicate object keys and nesting deeper than 32. */
export function parseStrictJson(text: string): unknown {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const fail = (): never => {
    throw new StrictJsonError('syntax');
  };
  const str = (): string => {
    // Find the closing quote, then let JSON.parse decode escapes of this one string.
    const start = i;
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c === 0x5c) i++;
      else if (c < 0x20) fail();
      i++;
    }
    if (i >= n) fail();
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail();
    }
  };
  const value = (depth: number): unknown => {
    if (depth > MAX_DEPTH) fail();
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        const key = str();
        if (seen.has(key)) throw new StrictJsonError('duplicate_key');
        seen.add(key);
        ws();
        if (text[i] !== ':') fail();
        i++;
        const v = value(depth + 1);
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return out;
        }
        fail();
      }
    }
    if (c === '[') {
      i++;
      const out: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return out;
        }
        fail();
      }
    }
    if (c === '"') return str();
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
    if (!m) fail();
    i += m![0].length;
    return JSON.parse(m![0]) as unknown;
  };
  const out = value(0);
  ws();
  if (i !== n) fail();
  return out;
}
