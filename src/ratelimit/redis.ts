// The Redis store: one GCRA Lua script, loaded once (SCRIPT LOAD at start) and run by EVALSHA: one round
// trip and one command per decision. After NOSCRIPT (SCRIPT FLUSH, a failover to a fresh replica) the
// same call is sent once as EVAL, which decides and re-caches the script on that node.
// Single server, Sentinel and Cluster through ioredis, with fail-fast settings: no offline queue (a
// command while disconnected fails at once), a command timeout, a short reconnect backoff. The store keeps
// an up/down state: the first failure marks it down (the limiter then answers from its failure mode
// without touching Redis) and a PING probe every `probeMs` brings it back as soon as Redis answers.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { withDeadline } from './deadline.ts';
import { GCRA_BATCH_LUA, GCRA_LUA } from './gcra.ts';
import { StoreUnavailableError, type HitResult, type Rate, type RateLimitStore } from '../contract/rate-limit.ts';

export type RedisTarget =
  | { kind: 'single'; host: string; port: number; db: number; username?: string; password?: string; tls: boolean; ca?: string }
  | { kind: 'sentinel'; sentinels: { host: string; port: number }[]; name: string; db: number; username?: string; password?: string; sentinelPassword?: string; tls: boolean; ca?: string }
  | { kind: 'cluster'; nodes: { host: string; port: number }[]; username?: string; password?: string; tls: boolean; ca?: string };

const SCHEME = /^(rediss?)(?:\+(sentinel|cluster))?:\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?(?:\?([^#]*))?$/i;

function hosts(text: string, defaultPort: number): { host: string; port: number }[] | string {
  const out: { host: string; port: number }[] = [];
  for (const part of text.split(',')) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(part.trim());
    if (!m) return `invalid host "${part}"`;
    const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
    const port = m[2] === undefined ? defaultPort : Number(m[2]);
    if (port < 1 || port > 65535) return `invalid port in "${part}"`;
    out.push({ host, port });
  }
  return out;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Reads a store URL. Schemes: `redis://` and `rediss://` (TLS) for one server,
 * `redis+sentinel://[user:pass@]s1:26379,s2:26379/MASTER[/DB]` and
 * `redis+cluster://[user:pass@]n1:6379,n2:6379` (both also `rediss+...`). Query: `ca=/path.pem` (TLS CA),
 * `sentinel_password=...`. Returns the target, or a message saying what is wrong (never the password).
 */
export function parseRedisUrl(text: string): RedisTarget | string {
  const m = SCHEME.exec(text.trim());
  if (!m) return 'expected redis://, rediss://, redis+sentinel:// or redis+cluster:// followed by host:port';
  const tls = m[1]!.toLowerCase() === 'rediss';
  const variant = m[2]?.toLowerCase();
  let username: string | undefined;
  let password: string | undefined;
  if (m[3] !== undefined && m[3] !== '') {
    const colon = m[3].indexOf(':');
    if (colon === -1) password = decode(m[3]);
    else {
      username = decode(m[3].slice(0, colon)) || undefined;
      password = decode(m[3].slice(colon + 1)) || undefined;
    }
  }
  const query = new URLSearchParams(m[6] ?? '');
  const ca = query.get('ca') ?? undefined;
  const segments = (m[5] ?? '').split('/').filter(Boolean);
  const dbOf = (s: string | undefined): number | string => {
    if (s === undefined) return 0;
    return /^\d{1,2}$/.test(s) ? Number(s) : `invalid database number "${s}"`;
  };
  if (variant === 'sentinel') {
    const list = hosts(m[4]!, 26379);
    if (typeof list === 'string') return list;
    const name = segments[0];
    if (!name) return 'a sentinel URL names the master: redis+sentinel://host:26379,host2:26379/MASTER_NAME';
    const db = dbOf(segments[1]);
    if (typeof db === 'string') return db;
    return { kind: 'sentinel', sentinels: list, name: decode(name), db, username, password, sentinelPassword: query.get('sentinel_password') ?? undefined, tls, ca };
  }
  if (variant === 'cluster') {
    const list = hosts(m[4]!, 6379);
    if (typeof list === 'string') return list;
    if (segments.length) return 'a cluster has no database number: remove the path';
    return { kind: 'cluster', nodes: list, username, password, tls, ca };
  }
  const list = hosts(m[4]!, tls ? 6380 : 6379);
  if (typeof list === 'string') return list;
  if (list.length !== 1) return 'several hosts: use redis+sentinel:// or redis+cluster://';
  const db = dbOf(segments[0]);
  if (typeof db === 'string') return db;
  return { kind: 'single', host: list[0]!.host, port: list[0]!.port, db, username, password, tls, ca };
}

/** What the URL says, password masked: for logs and `portcullis explain`. */
export function describeTarget(t: RedisTarget): string {
  const auth = t.password ? `${t.username ?? ''}:********@` : '';
  const s = t.tls ? 'rediss' : 'redis';
  if (t.kind === 'single') return `${s}://${auth}${t.host}:${t.port}/${t.db}`;
  if (t.kind === 'sentinel') return `${s}+sentinel://${auth}${t.sentinels.map((h) => `${h.host}:${h.port}`).join(',')}/${t.name}`;
  return `${s}+cluster://${auth}${t.nodes.map((h) => `${h.host}:${h.port}`).join(',')}`;
}

export interface RedisStoreOptions {
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** Interval of the PING probe while down. */
  probeMs: number;
  /** Called on every transition between up and down (not on every failure). */
  onStateChange?(up: boolean, reason: string): void;
  /** Called on every failed decision (for the failure counter). */
  onFailure?(reason: string): void;
}

function errorReason(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/timed? ?out/i.test(msg)) return 'timeout';
  if (/enableOfflineQueue|Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|MaxRetriesPerRequest/i.test(msg)) return 'disconnected';
  if (/CLUSTERDOWN|TRYAGAIN|MOVED|ASK|Failed to refresh slots/i.test(msg)) return 'cluster';
  if (/LOADING|BUSY|READONLY|MASTERDOWN|NOAUTH|WRONGPASS|OOM/i.test(msg)) return msg.split(' ')[0]!.toLowerCase();
  return 'error';
}

function toBatch(reply: unknown): { allowed: number; offsetMs: number } {
  const r = reply as [number, string];
  return { allowed: r[0], offsetMs: Number(r[1]) };
}

export class RedisStore implements RateLimitStore {
  readonly kind = 'redis' as const;
  readonly target: RedisTarget;
  #client: Redis | Cluster;
  readonly #sha = createHash('sha1').update(GCRA_LUA).digest('hex');
  readonly #batchSha = createHash('sha1').update(GCRA_BATCH_LUA).digest('hex');
  readonly #options: RedisStoreOptions;
  #up = false;
  #everUp = false;
  #closed = false;
  #probe: NodeJS.Timeout | null = null;
  #probing = false;
  readonly #toResult = (reply: unknown): HitResult => {
    const r = reply as number[];
    return { allowed: r[0] === 1, remaining: r[1]!, resetMs: r[2]!, retryAfterMs: r[3]! };
  };

  constructor(target: RedisTarget, options: RedisStoreOptions) {
    this.target = target;
    this.#options = options;
    this.#client = this.#attach(createClient(target, options));
  }

  /** The store's own deadline on a command (src/ratelimit/deadline.ts); the client's timeout is only the backstop. */
  #timed<T>(work: Promise<T>): Promise<T> {
    return withDeadline(work, this.#options.commandTimeoutMs);
  }

  /** The ioredis client in use (replaced when ioredis gives up on one). */
  get client(): Redis | Cluster {
    return this.#client;
  }

  #attach(client: Redis | Cluster): Redis | Cluster {
    client.on('error', () => {
      // Connection errors surface as failed commands and the state machine; ioredis also emits them here,
      // and an unhandled 'error' event would end the process.
    });
    client.on('ready', () => {
      if (!this.#up) void this.#check();
    });
    // ioredis ends a client for good in some cases (a Sentinel failover caught mid-connect, a cluster
    // that never formed): replace it, so that the store always finds its way back.
    client.on('end', () => {
      if (this.#closed || this.#client !== client) return;
      this.#markDown('connection ended');
      setTimeout(() => {
        if (this.#closed || this.#client !== client) return;
        client.disconnect();
        this.#client = this.#attach(createClient(this.target, this.#options));
        this.#client.connect().catch(() => undefined);
      }, this.#options.probeMs).unref();
    });
    return client;
  }

  /** True while Redis answers; while false the limiter uses its failure mode without asking Redis. */
  get available(): boolean {
    return this.#up;
  }

  /**
   * Connects (clients are lazy: compiling a policy to validate or explain it opens no connection) and
   * resolves once the script is loaded, or after the connect timeout (then the store starts down).
   */
  ready(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        if (!this.#up) this.#markDown('unreachable at start', true);
        resolve();
      }, this.#options.connectTimeoutMs + this.#options.commandTimeoutMs);
      timer.unref();
      const attempt = () =>
        this.#loadScript().then(
          () => {
            clearTimeout(timer);
            this.#markUp();
            resolve();
          },
          () => {
            if (!this.#closed && !this.#up) setTimeout(attempt, 100).unref();
          },
        );
      if (this.#client.status === 'ready') attempt();
      else this.#client.once('ready', attempt);
      if (this.#client.status === 'wait') this.#client.connect().catch(() => undefined);
    });
  }

  async #loadScript(): Promise<void> {
    const c = this.#client;
    if (ioredis !== null && c instanceof ioredis.Cluster) await this.#timed(Promise.all(c.nodes('master').flatMap((n) => [n.script('LOAD', GCRA_LUA), n.script('LOAD', GCRA_BATCH_LUA)])));
    else await this.#timed(Promise.all([c.script('LOAD', GCRA_LUA), c.script('LOAD', GCRA_BATCH_LUA)]));
  }

  hit(key: string, cost: number, _now: number, rate: Rate): Promise<HitResult> {
    return this.#evalScript(GCRA_LUA, this.#sha, key, rate, cost, this.#toResult);
  }

  /**
   * `count` requests of cost 1 for `key` decided in one command (GCRA_BATCH_LUA): how many of them pass,
   * and the bucket's offset to compute each one's answer (gcra.ts batchResult).
   */
  hitBatch(key: string, count: number, rate: Rate): Promise<{ allowed: number; offsetMs: number }> {
    return this.#evalScript(GCRA_BATCH_LUA, this.#batchSha, key, rate, count, toBatch);
  }

  /** One script call by its SHA; after NOSCRIPT (flushed, or a fresh replica) once more with its text. */
  #evalScript<T>(lua: string, sha: string, key: string, rate: Rate, n: number, convert: (reply: unknown) => T): Promise<T> {
    const c = this.#client;
    return this.#timed(c.evalsha(sha, 1, key, rate.intervalMs, rate.toleranceMs, n)).then(convert, (err: unknown) => {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
        return this.#timed(c.eval(lua, 1, key, rate.intervalMs, rate.toleranceMs, n)).then(convert, (e: unknown) => this.#fail(e));
      }
      return this.#fail(err);
    });
  }

  /**
   * Several batches (different keys) in one write: a pipeline sent at once; a lone batch is one command,
   * without a pipeline around it. A Cluster spreads keys over nodes, so there each batch goes alone
   * (auto-pipelined per node).
   */
  hitBatches(list: readonly { readonly key: string; readonly count: number; readonly rate: Rate }[]): Promise<{ allowed: number; offsetMs: number }>[] {
    const c = this.#client;
    if (list.length === 1 || (ioredis !== null && c instanceof ioredis.Cluster)) return list.map((b) => this.hitBatch(b.key, b.count, b.rate));
    const pipeline = c.pipeline();
    for (const b of list) pipeline.evalsha(this.#batchSha, 1, b.key, b.rate.intervalMs, b.rate.toleranceMs, b.count);
    const replies = this.#timed(pipeline.exec());
    return list.map((b, i) =>
      replies.then(
        (all) => {
          const [err, reply] = all?.[i] ?? [new Error('no reply'), null];
          if (err === null) return toBatch(reply);
          if (err.message.startsWith('NOSCRIPT')) return this.hitBatch(b.key, b.count, b.rate);
          return this.#fail(err);
        },
        (err: unknown) => this.#fail(err),
      ),
    );
  }

  #fail(err: unknown): never {
    const reason = errorReason(err);
    this.#options.onFailure?.(reason);
    this.#markDown(reason);
    throw new StoreUnavailableError(`redis rate-limit store unavailable: ${reason}`, err);
  }

  #markDown(reason: string, atStart = false): void {
    if (this.#closed) return;
    if (this.#up || (atStart && !this.#everUp)) {
      this.#up = false;
      this.#options.onStateChange?.(false, reason);
    }
    if (this.#probe === null) {
      this.#probe = setInterval(() => void this.#check(), this.#options.probeMs);
      this.#probe.unref();
    }
  }

  #markUp(): void {
    if (this.#closed) return;
    if (this.#probe !== null) {
      clearInterval(this.#probe);
      this.#probe = null;
    }
    if (!this.#up) {
      this.#up = true;
      const first = !this.#everUp;
      this.#everUp = true;
      this.#options.onStateChange?.(true, first ? 'connected' : 'answering again');
    }
  }

  /** One PING; up when it answers within the command timeout. */
  async #check(): Promise<void> {
    if (this.#probing || this.#closed) return;
    this.#probing = true;
    try {
      await this.#timed(this.#client.ping());
      this.#markUp();
    } catch {
      // still down; the next probe tries again
    } finally {
      this.#probing = false;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#probe !== null) clearInterval(this.#probe);
    this.#probe = null;
    if (this.#client.status === 'wait') {
      this.#client.disconnect();
      return;
    }
    try {
      await Promise.race([this.#client.quit(), new Promise((r) => setTimeout(r, 500).unref())]);
    } catch {
      // already gone
    }
    this.#client.disconnect();
  }
}

function tlsOptions(t: RedisTarget): RedisOptions['tls'] {
  if (!t.tls) return undefined;
  return t.ca ? { ca: readFileSync(t.ca) } : {};
}

/**
 * ioredis' own command timeout under the store's deadline: long enough never to fire first (a reply read
 * in time must win), short enough to drop a command a dead connection will never answer.
 */
function backstopMs(commandTimeoutMs: number): number {
  return commandTimeoutMs * 2 + 1_000;
}

// ioredis is loaded when the first Redis store is created, not at start: a policy without Redis does not
// pay its memory (about 20 MB of RSS).
const requireModule = createRequire(import.meta.url);
let ioredis: typeof import('ioredis') | null = null;

/**
 * A fail-fast ioredis client for `t` (lazy: call connect()); also used by the OIDC session store. Its users
 * hold each command to `commandTimeoutMs` with withDeadline (src/ratelimit/deadline.ts); the client's own
 * command timeout is the backstop above it, so it never fails a reply the deadline would keep.
 */
export function createClient(t: RedisTarget, o: Pick<RedisStoreOptions, 'connectTimeoutMs' | 'commandTimeoutMs'>): Redis | Cluster {
  ioredis ??= requireModule('ioredis') as typeof import('ioredis');
  const { Redis, Cluster } = ioredis;
  const common: RedisOptions = {
    connectTimeout: o.connectTimeoutMs,
    commandTimeout: backstopMs(o.commandTimeoutMs),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Other commands (the OIDC session store's) leave in one write per event-loop tick instead of one
    // each. The limiter's scripts need none of it: it coalesces a turn's checks itself (one EVALSHA per
    // bucket, several buckets in one explicit pipeline), and ioredis' auto-pipeline built a Pipeline
    // object around each lone command (3.7% of a full-policy request's CPU in bench/profile.ts).
    enableAutoPipelining: true,
    autoPipeliningIgnoredCommands: ['evalsha', 'eval'],
    // Reconnect fast: recovery must follow Redis within a second.
    retryStrategy: (times: number) => Math.min(50 * times, 200),
    username: t.username,
    password: t.password,
    tls: tlsOptions(t),
  };
  if (t.kind === 'single') return new Redis({ ...common, host: t.host, port: t.port, db: t.db });
  if (t.kind === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: t.sentinels,
      name: t.name,
      db: t.db,
      sentinelPassword: t.sentinelPassword,
      sentinelTLS: tlsOptions(t) as RedisOptions['sentinelTLS'],
      enableTLSForSentinelMode: t.tls,
      sentinelRetryStrategy: (times: number) => Math.min(50 * times, 200),
      sentinelCommandTimeout: o.commandTimeoutMs, // ioredis' own queries to the sentinels, under no caller's deadline
      failoverDetector: true,
    });
  }
  const cluster: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    enableAutoPipelining: true, // per node, as for a single server
    clusterRetryStrategy: (times: number) => Math.min(50 * times, 200),
    slotsRefreshTimeout: Math.max(o.connectTimeoutMs, 1000),
    maxRedirections: 4,
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50,
    redisOptions: common,
  };
  return new Cluster(t.nodes, cluster);
}
