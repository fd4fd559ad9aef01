// Route lookup decided at compile time: host buckets (exact, then wildcard, then any host), each with an
// exact-path map, a segment-aware prefix map and a list of glob patterns. A request costs a few Map
// lookups, one per path segment at most, whatever the number of routes; a bucket without globs runs no
// regular expression. Globs (one anchored RegExp each) are tried only after the exact paths, and only
// those at least as deep as the prefix that matched (see `matchBucket` for the specificity rule).

export interface RouteMatchSpec {
  hosts: readonly string[];
  path: string | null;
  pathPrefix: string | null;
  methods: readonly string[];
  /** Match the path whatever its letter case (for upstreams that treat `/API` as `/api`). */
  caseInsensitive?: boolean;
  // A glob pattern (`/files/**/*.png`); `path` and `pathPrefix` are null then.
  pathGlob?: string | null;
}

interface GlobCandidate<R> extends Candidate<R> {
  readonly regex: RegExp;
  /** Literal segments before the first wildcard: compared with the depth of the matching prefix. */
  readonly depth: number;
  /** Characters other than `*`: more is more specific among globs of the same depth. */
  readonly literals: number;
  readonly doubleStar: boolean;
  readonly order: number;
}

interface Candidate<R> {
  methods: ReadonlySet<string> | null;
  route: R;
  /** Stored under its lower-case path; also taken by requests that differ only in case. */
  caseless: boolean;
}

interface HostBucket<R> {
  exact: Map<string, Candidate<R>[]>;
  prefix: Map<string, Candidate<R>[]>;
  /** Most specific first: depth, then literal characters, then without `**`, then policy order. */
  globs: GlobCandidate<R>[];
  /** Some route here is case-insensitive: lookups also try the lower-cased path. */
  caseless: boolean;
}

export type RouteConflict = { index: number; otherIndex: number };

/** `/api/` and `/api` are the same prefix: both match `/api` and `/api/...`, never `/apiary`. */
export function prefixKey(prefix: string): string {
  return prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
}

/**
 * Why `glob` is not a pattern the router takes, or null. `*` matches within one segment (a lone `*` one
 * non-empty segment), `**` (a whole segment) any number of segments. At most one `*` per segment and one
 * `**` per pattern: then matching costs time linear in the path, whatever the request.
 */
export function globProblem(glob: string): string | null {
  if (!glob.startsWith('/')) return 'a glob starts with /';
  if (/[?[\]{}\\]/.test(glob)) return '?, [ ], { } and \\ are reserved in globs';
  if (!glob.includes('*')) return 'a glob without * is an exact path: use "path"';
  let doubles = 0;
  for (const seg of glob.slice(1).split('/')) {
    if (seg === '**') doubles++;
    else if (seg.includes('**')) return '** must be a whole segment (/a/**/b)';
    else if (seg.split('*').length > 2) return 'at most one * per segment';
  }
  if (doubles > 1) return 'at most one ** per glob';
  return null;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The anchored RegExp of a glob (checked by `globProblem`), matched against the normalized path. */
export function globRegExp(glob: string, caseInsensitive: boolean): RegExp {
  const segs = glob.slice(1).split('/');
  let re = '^';
  segs.forEach((seg, i) => {
    if (seg === '**') re += i === segs.length - 1 ? '(?:/.*)?' : '(?:/[^/]+)*';
    else if (seg === '*') re += '/[^/]+';
    else re += '/' + seg.split('*').map(escapeRegExp).join('[^/]*');
  });
  return new RegExp(re + '$', caseInsensitive ? 'i' : '');
}

/** Literal segments of a glob before its first wildcard. */
function globDepth(glob: string): number {
  let depth = 0;
  for (const seg of glob.slice(1).split('/')) {
    if (seg.includes('*')) break;
    depth++;
  }
  return depth;
}

/** Segments of a prefix key: `/` 0, `/api` 1, `/api/admin` 2. */
function prefixDepth(key: string): number {
  if (key === '/') return 0;
  let n = 0;
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) === 0x2f) n++;
  return n;
}

export class Router<R> {
  readonly #exactHosts = new Map<string, HostBucket<R>>();
  /** Wildcard hosts by suffix (`*.example.com` → `.example.com`), longest suffix first. */
  #wildcardHosts: [string, HostBucket<R>][] = [];
  readonly #anyHost: HostBucket<R> = newBucket();
  #globOrder = 0;
  /** `host path` → method (or `*`) → index of the route that claimed it, to refuse duplicates. */
  readonly #claimed = new Map<string, Map<string, number>>();

  /** Adds a route; returns the index of an earlier route it duplicates, if any. */
  add(spec: RouteMatchSpec, route: R, index: number): RouteConflict | null {
    const methods = spec.methods.length ? new Set(spec.methods.map((m) => m.toUpperCase())) : null;
    const hosts = spec.hosts.length ? spec.hosts.map((h) => h.toLowerCase()) : ['*'];
    const caseless = spec.caseInsensitive === true;
    const fold = (p: string) => (caseless ? p.toLowerCase() : p);
    const glob = spec.pathGlob ?? null;
    const key = glob !== null ? `*${fold(glob)}` : spec.path !== null ? `=${fold(spec.path)}` : `^${fold(prefixKey(spec.pathPrefix ?? '/'))}`;
    for (const host of hosts) {
      // Same host, same path, overlapping methods: the later route could never match.
      const claimed = this.#claimed.get(`${host} ${key}`) ?? new Map<string, number>();
      for (const [method, other] of claimed) {
        // A method-limited route beside a catch-all on the same path is fine (the limited one wins).
        if ((methods === null && method === '*') || (methods !== null && methods.has(method))) return { index, otherIndex: other };
      }
      for (const method of methods ?? ['*']) claimed.set(method, index);
      this.#claimed.set(`${host} ${key}`, claimed);
      const bucket = this.#bucket(host);
      if (glob !== null) {
        bucket.globs.push({
          methods, route, caseless, regex: globRegExp(glob, caseless), depth: globDepth(glob),
          literals: glob.replaceAll('*', '').length, doubleStar: glob.includes('**'), order: this.#globOrder++,
        });
        bucket.globs.sort((a, b) => b.depth - a.depth || b.literals - a.literals || Number(a.doubleStar) - Number(b.doubleStar)
          || (a.methods === null ? 1 : 0) - (b.methods === null ? 1 : 0) || a.order - b.order);
        continue;
      }
      if (caseless) bucket.caseless = true;
      const table = spec.path !== null ? bucket.exact : bucket.prefix;
      const mapKey = fold(spec.path !== null ? spec.path : prefixKey(spec.pathPrefix ?? '/'));
      const list = table.get(mapKey) ?? [];
      list.push({ methods, route, caseless });
      // Routes limited to methods are more specific than catch-all ones on the same path.
      list.sort((a, b) => (a.methods === null ? 1 : 0) - (b.methods === null ? 1 : 0));
      table.set(mapKey, list);
    }
    return null;
  }

  #bucket(host: string): HostBucket<R> {
    if (host === '*') return this.#anyHost;
    if (host.startsWith('*.')) {
      const suffix = host.slice(1);
      let entry = this.#wildcardHosts.find(([s]) => s === suffix);
      if (!entry) {
        entry = [suffix, newBucket()];
        this.#wildcardHosts.push(entry);
        this.#wildcardHosts.sort((a, b) => b[0].length - a[0].length);
      }
      return entry[1];
    }
    let bucket = this.#exactHosts.get(host);
    if (!bucket) {
      bucket = newBucket();
      this.#exactHosts.set(host, bucket);
    }
    return bucket;
  }

  /** True when some route is bound to this host (or a catch-all exists). */
  servesHost(host: string): boolean {
    if (this.#anyHost.exact.size || this.#anyHost.prefix.size || this.#anyHost.globs.length) return true;
    if (this.#exactHosts.has(host)) return true;
    return this.#wildcardHosts.some(([suffix]) => host.endsWith(suffix) && host.length > suffix.length);
  }

  /**
   * The methods some route takes for this host and path, whatever the method asked (for `Allow` on a
   * 405); null when a route takes every method, [] when no route takes the path. Not for the hot path:
   * only called when `match` found nothing.
   */
  methodsAt(host: string, path: string): string[] | null {
    const out = new Set<string>();
    const buckets: HostBucket<R>[] = [];
    const exactHost = this.#exactHosts.get(host);
    if (exactHost) buckets.push(exactHost);
    for (const [suffix, bucket] of this.#wildcardHosts) if (host.length > suffix.length && host.endsWith(suffix)) buckets.push(bucket);
    buckets.push(this.#anyHost);
    const lower = path.toLowerCase();
    const take = (list: Candidate<R>[] | undefined, folded: boolean): boolean => {
      for (const c of list ?? []) {
        if (folded && !c.caseless) continue;
        if (c.methods === null) return true;
        for (const m of c.methods) out.add(m);
      }
      return false;
    };
    for (const b of buckets) {
      if (take(b.exact.get(path), false) || (b.caseless && take(b.exact.get(lower), true))) return null;
      for (const g of b.globs) if (g.regex.test(path) && take([g], false)) return null;
      let end = path.length > 1 && path.endsWith('/') ? path.length - 1 : path.length;
      for (;;) {
        const cut = end === 0 ? 1 : end;
        if (take(b.prefix.get(path.slice(0, cut)), false) || (b.caseless && take(b.prefix.get(lower.slice(0, cut)), true))) return null;
        if (end === 0) break;
        end = path.lastIndexOf('/', end - 1);
        if (end < 0) break;
      }
    }
    return [...out];
  }

  match(host: string, method: string, path: string): R | null {
    const exactHost = this.#exactHosts.get(host);
    if (exactHost) {
      const r = matchBucket(exactHost, method, path);
      if (r !== null) return r;
    }
    for (const [suffix, bucket] of this.#wildcardHosts) {
      if (host.length > suffix.length && host.endsWith(suffix)) {
        const r = matchBucket(bucket, method, path);
        if (r !== null) return r;
      }
    }
    return matchBucket(this.#anyHost, method, path);
  }
}

function pick<R>(list: Candidate<R>[] | undefined, method: string, caselessOnly: boolean): R | null {
  if (list === undefined) return null;
  for (const c of list) if ((c.methods === null || c.methods.has(method)) && (!caselessOnly || c.caseless)) return c.route;
  return null;
}

function newBucket<R>(): HostBucket<R> {
  return { exact: new Map(), prefix: new Map(), globs: [], caseless: false };
}

// Specificity, most specific first: an exact path; then a glob or a prefix, whichever has more literal
// leading segments (a glob's segments before its first wildcard against the prefix's segments), a glob
// winning a tie; among globs of the same depth, more literal characters, then one without `**`, then
// policy order; among prefixes, the longer. Methods-limited routes before catch-alls at each place.
// So `/files/**/*.png` beats the prefixes `/files` and `/`, but never `/files/private`.
function matchBucket<R>(bucket: HostBucket<R>, method: string, path: string): R | null {
  // The lower-cased path is tried only for case-insensitive routes, right after the exact-case lookup
  // at the same specificity, so an exact path still beats any prefix.
  const lower = bucket.caseless ? path.toLowerCase() : path;
  const folded = lower !== path;
  const exact = pick(bucket.exact.get(path), method, false) ?? (folded ? pick(bucket.exact.get(lower), method, true) : null);
  if (exact !== null) return exact;
  const globs = bucket.globs;
  if (globs.length === 0) return bucket.prefix.size === 0 ? null : matchPrefix(bucket, method, path, lower, folded, null);
  const depth: [number] = [-1];
  const prefixed = bucket.prefix.size === 0 ? null : matchPrefix(bucket, method, path, lower, folded, depth);
  for (let i = 0; i < globs.length; i++) {
    const g = globs[i]!;
    if (g.depth < depth[0]) break;
    if ((g.methods === null || g.methods.has(method)) && g.regex.test(path)) return g.route;
  }
  return prefixed;
}

function matchPrefix<R>(bucket: HostBucket<R>, method: string, path: string, lower: string, folded: boolean, depth: [number] | null): R | null {
  // Longest prefix first, cutting at segment boundaries: /a/b/c, /a/b, /a, /.
  let end = path.length > 1 && path.endsWith('/') ? path.length - 1 : path.length;
  for (;;) {
    const cut = end === 0 ? 1 : end;
    const candidate = pick(bucket.prefix.get(path.slice(0, cut)), method, false) ?? (folded ? pick(bucket.prefix.get(lower.slice(0, cut)), method, true) : null);
    if (candidate !== null) {
      if (depth !== null) depth[0] = prefixDepth(path.slice(0, cut));
      return candidate;
    }
    if (end === 0) return null;
    end = path.lastIndexOf('/', end - 1);
    if (end < 0) return null;
  }
}
