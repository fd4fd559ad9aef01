// A JSON Web Key Set from a local file (a Kubernetes Secret or ConfigMap volume): read at compile time
// (a missing or broken file is a policy error), then polled and re-read when it changes. A broken new
// file keeps the last good set and says why in the log; polling (not fs.watch) follows Kubernetes'
// symlink swaps of mounted volumes, as the TLS certificate reload does.
import { readFileSync, statSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from 'pino';
import { keySetOf, parseJwks, type KeySet } from './jwks.ts';
import type { JwsAlgorithm } from './keys.ts';

const MAX_JWKS_BYTES = 1024 * 1024;

export interface JwksFileOptions {
  provider: string;
  file: string;
  algorithms: readonly JwsAlgorithm[];
  log: Logger;
  /** How often the file is checked for a change (ms). */
  pollMs?: number;
  /** Called when a re-read brings a different key set (the token cache is cleared). */
  onChange(set: KeySet): void;
}

/** Reads and parses the file; throws with a message fit for a policy problem or a log line. */
export function readJwksFile(file: string, algorithms: readonly JwsAlgorithm[]): KeySet {
  let text: Buffer;
  try {
    if (statSync(file).size > MAX_JWKS_BYTES) throw new Error('larger than 1 MiB');
    text = readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text.toString('utf8'));
  } catch (err) {
    throw new Error(`${file} is not JSON: ${(err as Error).message}`);
  }
  const keys = parseJwks(doc, algorithms);
  if (keys.length === 0) throw new Error(`${file} has no key usable with the provider's algorithms`);
  return keySetOf(keys);
}

export class JwksFileSource {
  readonly file: string;
  readonly #o: JwksFileOptions;
  #set: KeySet;
  #watching = false;
  lastError: string | null = null;
  lastAttemptAt: number | null = null;
  lastSuccessAt: number | null = null;

  /** `initial` is the set read at compile time. */
  constructor(options: JwksFileOptions, initial: KeySet) {
    this.#o = options;
    this.file = options.file;
    this.#set = initial;
    this.lastAttemptAt = this.lastSuccessAt = Date.now();
  }

  get keys(): KeySet {
    return this.#set;
  }

  /** Starts polling; deferred one turn so a policy compiled only to be validated never watches. */
  async start(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#watching) return;
    this.#watching = true;
    watchFile(this.file, { interval: this.#o.pollMs ?? 1_000, persistent: false }, (cur: Stats, prev: Stats) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) this.reload();
    });
  }

  /** Re-reads the file now; keeps the last good set when the new one is broken. */
  reload(): void {
    this.lastAttemptAt = Date.now();
    try {
      const next = readJwksFile(this.file, this.#o.algorithms);
      this.lastError = null;
      this.lastSuccessAt = Date.now();
      if (next.fingerprint === this.#set.fingerprint) return;
      this.#set = next;
      this.#o.log.info({ provider: this.#o.provider, file: this.file, keys: next.all.length }, 'JWKS file changed; key set replaced');
      this.#o.onChange(next);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.#o.log.warn({ provider: this.#o.provider, file: this.file, err: this.lastError, kept_keys: this.#set.all.length }, 'JWKS file unusable; keeping the last good key set');
    }
  }

  /** A token named an unknown kid: nothing to fetch (the file is polled), so the token is refused. */
  refetch(): null {
    return null;
  }

  async close(): Promise<void> {
    if (this.#watching) unwatchFile(this.file);
    this.#watching = false;
  }
}
