// Active health checks: every `interval`, one GET of `path` per target through that target's own pool
// (so TLS, SNI and client certificates are the ones real requests use). `unhealthy_after` failed checks in
// a row take a target out, `healthy_after` good ones bring it back. Timers are unref'd and stop on close.
import type { Target } from './balancer.ts';
import { undici } from './undici.ts';

export interface ActiveCheckConfig {
  path: string;
  interval: number;
  timeout: number;
  expected_status: number[];
  healthy_after: number;
  unhealthy_after: number;
  host: string | undefined;
}

export interface HealthEvents {
  /** The active check changed its verdict on a target. */
  changed(target: Target, healthy: boolean, detail: string): void;
}

export class ActiveHealthChecker {
  readonly #targets: readonly Target[];
  readonly #config: ActiveCheckConfig;
  readonly #events: HealthEvents;
  readonly #expected: ReadonlySet<number>;
  readonly #headers: Record<string, string>;
  readonly #passes: number[];
  readonly #fails: number[];
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #running = false;

  constructor(targets: readonly Target[], config: ActiveCheckConfig, events: HealthEvents) {
    this.#targets = targets;
    this.#config = config;
    this.#events = events;
    this.#expected = new Set(config.expected_status);
    this.#headers = { 'user-agent': 'portcullis-health-check' };
    if (config.host !== undefined) this.#headers.host = config.host;
    this.#passes = targets.map(() => 0);
    this.#fails = targets.map(() => 0);
  }

  /** First round soon (a dead target is found before it takes much traffic), then every interval. */
  start(): void {
    this.#schedule(Math.min(this.#config.interval, 250));
  }

  #schedule(delay: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#round(), delay);
    this.#timer.unref();
  }

  async #round(): Promise<void> {
    if (this.#closed || this.#running) return;
    this.#running = true;
    try {
      await Promise.all(this.#targets.map((t) => this.#check(t)));
    } finally {
      this.#running = false;
      this.#schedule(this.#config.interval);
    }
  }

  async #check(target: Target): Promise<void> {
    let detail: string;
    let ok = false;
    try {
      const res = await undici().request(new URL(this.#config.path, target.origin), {
        dispatcher: target.pool,
        method: 'GET',
        headers: this.#headers,
        headersTimeout: this.#config.timeout,
        bodyTimeout: this.#config.timeout,
        ...(target.servername !== undefined ? { servername: target.servername } : {}),
      });
      await res.body.dump();
      ok = this.#expected.has(res.statusCode);
      detail = `status ${res.statusCode}`;
    } catch (err) {
      detail = (err as { code?: string }).code ?? (err as Error).message;
    }
    if (this.#closed) return;
    const i = target.index;
    if (ok) {
      this.#fails[i] = 0;
      this.#passes[i]!++;
      if (!target.checkHealthy && this.#passes[i]! >= this.#config.healthy_after) this.#events.changed(target, true, detail);
    } else {
      this.#passes[i] = 0;
      this.#fails[i]!++;
      if (target.checkHealthy && this.#fails[i]! >= this.#config.unhealthy_after) this.#events.changed(target, false, detail);
    }
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
