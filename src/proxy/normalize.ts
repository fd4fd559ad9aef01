// Request-target normalization. The path produced here is the one routed AND the one forwarded, so the
// gateway and the upstream can never disagree about which resource a request names. Anything that
// different servers read differently is refused instead of guessed at.

export type TargetRejection =
  | 'invalid_request_target'
  | 'invalid_percent_encoding'
  | 'encoded_path_separator'
  | 'control_character'
  | 'invalid_utf8'
  | 'path_traversal';

/** `NormalizedTarget.flags`: spellings that are valid but that upstreams read differently (policy decides). */
export const PATH_PARAMETER = 1; // `;` (or %3B) in a path segment: Tomcat, Jetty and Spring strip `;...` from a segment
export const ENCODED_PERCENT = 2; // %25 in the path: an upstream that decodes again sees a different path

export interface NormalizedTarget {
  /** Absolute path, dot segments resolved, duplicate slashes merged, unreserved characters decoded. */
  path: string;
  /** The query string including its leading `?`, or ''. Passed through as sent (validated only). */
  query: string;
  /** Authority of an absolute-form target (`GET http://host/ HTTP/1.1`), else null. */
  authority: string | null;
  /** PATH_PARAMETER | ENCODED_PERCENT bits; 0 for an ordinary path. */
  flags: number;
}

export type NormalizeResult = NormalizedTarget | TargetRejection;

const HEX = '0123456789ABCDEF';

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) ||
    byte === 0x2d || byte === 0x2e || byte === 0x5f || byte === 0x7e
  );
}

/** Characters allowed raw in a path or query (RFC 3986 pchar + "/" + "?"), everything else must be %-encoded. */
function isAllowedRaw(code: number): boolean {
  // Visible ASCII except space, `"`, `#`, `<`, `>`, `\`, `^`, backtick, `{`, `|`, `}`.
  if (code <= 0x20 || code >= 0x7f) return false;
  return !(code === 0x22 || code === 0x23 || code === 0x3c || code === 0x3e || code === 0x5c ||
    code === 0x5e || code === 0x60 || code === 0x7b || code === 0x7c || code === 0x7d);
}

/** Fast path: a plain target with nothing to decode or resolve is returned as is (no allocation but the result). */
function isPlain(target: string, end: number): boolean {
  let prevSlash = false;
  for (let i = 0; i < end; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x25 /* % */ || c === 0x3b /* ; */ || !isAllowedRaw(c)) return false;
    if (c === 0x2f) {
      if (prevSlash) return false;
      prevSlash = true;
    } else {
      if (c === 0x2e && prevSlash) return false; // a segment starting with "." may be a dot segment
      prevSlash = false;
    }
  }
  return true;
}

export function normalizeTarget(raw: string): NormalizeResult {
  let target = raw;
  let authority: string | null = null;
  if (target.charCodeAt(0) !== 0x2f /* / */) {
    // absolute-form (RFC 9112 3.2.2): only http(s) with an authority; `*` and authority-form are not proxied.
    const m = /^(https?):\/\/([^/?#]+)(.*)$/i.exec(target);
    if (!m) return 'invalid_request_target';
    authority = m[2]!.toLowerCase();
    if (authority.includes('@')) return 'invalid_request_target';
    target = m[3] === '' ? '/' : m[3]!;
    if (target.charCodeAt(0) !== 0x2f) {
      if (target.charCodeAt(0) !== 0x3f) return 'invalid_request_target';
      target = '/' + target;
    }
  }
  const q = target.indexOf('?');
  const pathEnd = q === -1 ? target.length : q;
  let query = '';
  if (q !== -1) {
    query = target.slice(q);
    for (let i = 1; i < query.length; i++) {
      const c = query.charCodeAt(i);
      if (c < 0x20 || c === 0x7f) return 'control_character';
      if (c === 0x23 || c === 0x20 || c > 0x7e) return 'invalid_request_target';
    }
  }
  if (isPlain(target, pathEnd)) return { path: q === -1 ? target : target.slice(0, pathEnd), query, authority, flags: 0 };

  // Decode byte by byte: unreserved characters are decoded, everything else stays encoded (in upper-case
  // hex), and non-ASCII byte runs must form valid UTF-8.
  const segments: string[] = [];
  let segment = '';
  let utf8Needed = 0;
  let flags = 0;
  for (let i = 1; i <= pathEnd; i++) {
    const c = i < pathEnd ? target.charCodeAt(i) : 0x2f;
    if (c === 0x25) {
      if (i + 2 >= pathEnd) return 'invalid_percent_encoding';
      const hi = hexValue(target.charCodeAt(i + 1));
      const lo = hexValue(target.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return 'invalid_percent_encoding';
      const byte = hi * 16 + lo;
      i += 2;
      if (utf8Needed > 0) {
        if ((byte & 0xc0) !== 0x80) return 'invalid_utf8';
        utf8Needed--;
        segment += '%' + HEX[hi] + HEX[lo];
        continue;
      }
      if (byte === 0x2f || byte === 0x5c) return 'encoded_path_separator';
      if (byte === 0x25) flags |= ENCODED_PERCENT;
      else if (byte === 0x3b) flags |= PATH_PARAMETER;
      if (byte < 0x20 || byte === 0x7f) return 'control_character';
      if (byte >= 0x80) {
        if (byte >= 0xc2 && byte <= 0xdf) utf8Needed = 1;
        else if (byte >= 0xe0 && byte <= 0xef) utf8Needed = 2;
        else if (byte >= 0xf0 && byte <= 0xf4) utf8Needed = 3;
        else return 'invalid_utf8';
        segment += '%' + HEX[hi] + HEX[lo];
        continue;
      }
      segment += isUnreserved(byte) ? String.fromCharCode(byte) : '%' + HEX[hi] + HEX[lo];
      continue;
    }
    if (utf8Needed > 0) return 'invalid_utf8';
    if (c === 0x2f) {
      if (segment === '..') {
        if (segments.length === 0) return 'path_traversal';
        segments.pop();
      } else if (segment !== '.' && segment !== '') {
        segments.push(segment);
      }
      segment = '';
      continue;
    }
    if (c < 0x20 || c === 0x7f) return 'control_character';
    if (!isAllowedRaw(c)) return 'invalid_request_target';
    if (c === 0x3b) flags |= PATH_PARAMETER;
    segment += target[i];
  }
  // A trailing slash (or a trailing dot segment, which names a directory) is kept: /a/ and /a differ.
  const lastRaw = target.slice(target.lastIndexOf('/', pathEnd - 1) + 1, pathEnd);
  const trailing = pathEnd > 1 && (target.charCodeAt(pathEnd - 1) === 0x2f || lastRaw === '.' || lastRaw === '..' || /^(%2e|\.){1,2}$/i.test(lastRaw));
  let path = '/' + segments.join('/');
  if (trailing && segments.length > 0) path += '/';
  return { path, query, authority, flags };
}

/**
 * The spelling a case- and slash-insensitive upstream (Express by default, IIS) would serve: lower case,
 * no trailing slash, and, when the path has parameters, each segment's `;...` removed with dot segments
 * resolved again (so `/public/..;/admin` is `/admin`, as Tomcat reads it). Routing this spelling tells
 * whether the request's spelling moved it to another route.
 */
export function canonicalPath(path: string, flags: number): string {
  let p = path.toLowerCase();
  if ((flags & PATH_PARAMETER) !== 0) {
    const out: string[] = [];
    for (const raw of p.split('/')) {
      const semi = raw.indexOf(';');
      const seg = semi === -1 ? raw : raw.slice(0, semi);
      if (seg === '..') out.pop();
      else if (seg !== '.' && seg !== '') out.push(seg);
    }
    p = '/' + out.join('/');
  }
  if (p.length > 1 && p.charCodeAt(p.length - 1) === 0x2f) p = p.slice(0, -1);
  return p;
}
