// The one reader of the request's Cookie header (RFC 6265 §4.2.1 / §5.4), used wherever the gateway reads a
// cookie: CSRF double submit, tokens from cookies, rate-limit token keys, sessions. Only SP and HTAB are
// trimmed, and a name must be an RFC 9110 token: `String.prototype.trim()` also strips U+00A0 (byte 0xA0
// of a latin1 header) and other Unicode spaces, so a cookie named "\xA0__Host-csrf" tossed in by a
// sibling domain would have been read as `__Host-csrf`. Here it is simply not that cookie.

/** RFC 9110 tchar: ALPHA DIGIT and !#$%&'*+-.^_`|~ */
const TCHAR = (() => {
  const t = new Uint8Array(128);
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  for (const ch of "!#$%&'*+-.^_`|~") t[ch.charCodeAt(0)] = 1;
  return t;
})();

/** True when `name` is a non-empty RFC 9110 token (what a cookie name must be). */
export function isCookieName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** `s` without leading and trailing SP/HTAB (RFC 6265's only whitespace; never Unicode spaces). */
export function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isOws(s.charCodeAt(a))) a++;
  while (b > a && isOws(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * Every value of cookie `name` (compared exactly, case-sensitive) in the order sent. Values are trimmed
 * of SP/HTAB and lose one surrounding pair of double quotes. Pairs whose name is not a token are skipped.
 * Several Cookie fields (HTTP/2 may split them) count as one list.
 */
export function cookieValues(header: string | readonly string[] | undefined, name: string): string[] {
  if (header === undefined) return [];
  if (typeof header !== 'string') {
    const out: string[] = [];
    for (const h of header) for (const v of cookieValues(h, name)) out.push(v);
    return out;
  }
  const out: string[] = [];
  // Cheap reject: the name does not occur at all.
  if (header.indexOf(name) === -1) return out;
  const len = header.length;
  let start = 0;
  while (start < len) {
    let end = header.indexOf(';', start);
    if (end === -1) end = len;
    const eq = header.indexOf('=', start);
    if (eq !== -1 && eq < end) {
      let ns = start;
      let ne = eq;
      while (ns < ne && isOws(header.charCodeAt(ns))) ns++;
      while (ne > ns && isOws(header.charCodeAt(ne - 1))) ne--;
      if (ne - ns === name.length && header.startsWith(name, ns) && isCookieName(name)) {
        let vs = eq + 1;
        let ve = end;
        while (vs < ve && isOws(header.charCodeAt(vs))) vs++;
        while (ve > vs && isOws(header.charCodeAt(ve - 1))) ve--;
        if (ve - vs >= 2 && header.charCodeAt(vs) === 0x22 && header.charCodeAt(ve - 1) === 0x22) {
          vs++;
          ve--;
        }
        out.push(header.slice(vs, ve));
      }
    }
    start = end + 1;
  }
  return out;
}

/**
 * The one value of cookie `name`: null when absent (or empty), undefined when it appears more than once
 * with different values (a tossed duplicate from a sibling domain: neither can be trusted).
 */
export function singleCookie(header: string | readonly string[] | undefined, name: string): string | null | undefined {
  const values = cookieValues(header, name);
  let found: string | null = null;
  for (const v of values) {
    if (v === '') continue;
    if (found !== null && found !== v) return undefined;
    found = v;
  }
  return found;
}
