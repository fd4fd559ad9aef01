// Route lookup decided at compile time: host buckets (exact, then wildcard, then any host), each with an
// exact-path map and a segment-aware prefix map. A request costs a few Map lookups, one per path segment
// at most, whatever the number of routes.

export interface RouteMatchSpec {
  hosts: readonly string[];
  path: string | null;
  pathPrefix: string | null;
  methods: readonly string[];
  /** Match the path whatever its letter case (for upstreams that treat `/API` as `/api`). */
  caseInsensitive?: boolean;
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
  /** Some route here is case-insensitive: lookups also try the lower-cased path. */
  caseless: boolean;
}

export type RouteConflict = { index: number; otherIndex: number };

/** `/api/` and `/api` are the same prefix: both match `/api` and `/api/...`, never `/apiary`. */
export function prefixKey(prefix: string): string {
  return prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
}

export class Router<R> {
  readonly #exactHosts = new Map<string, HostBucket<R>>();
  /** Wildcard hosts by suffix (`*.example.com` → `.example.com`), longest suffix first. */
  #wildcardHosts: [string, HostBucket<R>][] = [];
  readonly #anyHost: HostBucket<R> = { exact: new Map(), prefix: new Map(), caseless: false };
  /** `host path` → method (or `*`) → index of the route that claimed it, to refuse duplicates. */
  readonly #claimed = new Map<string, Map<string, number>>();

  /** Adds a route; returns the index of an earlier route it duplicates, if any. */
  add(spec: RouteMatchSpec, route: R, index: number): RouteConflict | null {
    const methods = spec.methods.length ? new Set(spec.methods.map((m) => m.toUpperCase())) : null;
    const hosts = spec.hosts.length ? spec.hosts.map((h) => h.toLowerCase()) : ['*'];
    const caseless = spec.caseInsensitive === true;
    const fold = (p: string) => (caseless ? p.toLowerCase() : p);
    const key = spec.path !== null ? `=${fold(spec.path)}` : `^${fold(prefixKey(spec.pathPrefix ?? '/'))}`;
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
        entry = [suffix, { exact: new Map(), prefix: new Map(), caseless: false }];
        this.#wildcardHosts.push(entry);
        this.#wildcardHosts.sort((a, b) => b[0].length - a[0].length);
      }
      return entry[1];
    }
    let bucket = this.#exactHosts.get(host);
    if (!bucket) {
      bucket = { exact: new Map(), prefix: new Map(), caseless: false };
      this.#exactHosts.set(host, bucket);
    }
    return bucket;
  }

  /** True when some route is bound to this host (or a catch-all exists). */
  servesHost(host: string): boolean {
    if (this.#anyHost.exact.size || this.#anyHost.prefix.size) return true;
    if (this.#exactHosts.has(host)) return true;
    return this.#wildcardHosts.some(([suffix]) => host.endsWith(suffix) && host.length > suffix.length);
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

function matchBucket<R>(bucket: HostBucket<R>, method: string, path: string): R | null {
  // The lower-cased path is tried only for case-insensitive routes, right after the exact-case lookup
  // at the same specificity, so an exact path still beats any prefix.
  const lower = bucket.caseless ? path.toLowerCase() : path;
  const folded = lower !== path;
  const exact = pick(bucket.exact.get(path), method, false) ?? (folded ? pick(bucket.exact.get(lower), method, true) : null);
  if (exact !== null) return exact;
  if (bucket.prefix.size === 0) return null;
  // Longest prefix first, cutting at segment boundaries: /a/b/c, /a/b, /a, /.
  let end = path.length > 1 && path.endsWith('/') ? path.length - 1 : path.length;
  for (;;) {
    const cut = end === 0 ? 1 : end;
    const candidate = pick(bucket.prefix.get(path.slice(0, cut)), method, false) ?? (folded ? pick(bucket.prefix.get(lower.slice(0, cut)), method, true) : null);
    if (candidate !== null) return candidate;
    if (end === 0) return null;
    end = path.lastIndexOf('/', end - 1);
    if (end < 0) return null;
  }
}
