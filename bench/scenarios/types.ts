// A benchmark scenario: a Portcullis policy (and the load to drive through it) measured in the same run as
// the upstream direct, nginx, the baselines and the plain Portcullis passthrough.
import type { Options } from 'autocannon';

export interface BenchContext {
  /** The upstream every scenario forwards to (the same one measured direct). */
  upstreamUrl: string;
  /** Redis for scenarios that need it (127.0.0.1:6379 on this machine). */
  redisUrl: string;
  /** A scratch directory for key files, certificates and logs. */
  dir: string;
}

export interface Scenario {
  /** Short name used in results files and the table, e.g. `jwt-hs256-hot`. */
  name: string;
  description: string;
  /** The policy YAML. Use `${LISTEN}` for the listener address and `${ADMIN}` for the admin address. */
  policy(ctx: BenchContext): string;
  /** The listener the policy declares is TLS: the load goes to https:// (default http). */
  scheme?: 'http' | 'https';
  /** The one load generator that can drive this scenario (e.g. autocannon, for client certificates). */
  tool?: 'autocannon' | 'wrk';
  /** autocannon options merged over the defaults (headers, method, body, requests...). */
  load?(ctx: BenchContext): Promise<Partial<Options>> | Partial<Options>;
  /** Environment of the gateway process. */
  env?(ctx: BenchContext): Record<string, string>;
  /** Start helpers the scenario needs (an OTLP receiver, say); returns their stop function. */
  setup?(ctx: BenchContext): Promise<() => Promise<void>>;
  /** The target from the issue, as a ratio to Portcullis passthrough in the same run. */
  target?: { atLeast?: number; atMost?: number; note?: string };
}
