// pino loggers: access (one line per request), audit (who did what, separate stream) and error/app log.
// Every registered secret is masked and credential headers are never written.
import pino, { type DestinationStream, type Logger } from 'pino';
import type { SecretRegistry } from '../config/secrets.ts';
import { LineWriter } from './line-writer.ts';

export type LogTarget = 'stdout' | 'stderr' | 'off' | string;

/**
 * The access log: one flat object per request, serialized with one JSON.stringify into pino's line
 * format (level, time, log, then the fields) rather than through pino's generic serializer, which was
 * most of the log's CPU cost per request (bench/profile.ts). Every line still passes the credential
 * and secret mask.
 */
export interface AccessLog {
  readonly enabled: boolean;
  /** Fields with undefined values are left out, as pino does. */
  write(fields: Record<string, unknown>): void;
}

const ACCESS_OFF: AccessLog = Object.freeze({ enabled: false, write() {} });

export interface Loggers {
  access: AccessLog;
  audit: Logger;
  error: Logger;
  /** Writes what is buffered, blocking (right before exit). */
  flush(): void;
  /** Waits until the batched access log is written, at most `timeoutMs` (a shutdown, before flush). */
  drain(timeoutMs: number): Promise<void>;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LEVELS)[number];

export function isLogLevel(value: string): value is LogLevel {
  return (LEVELS as readonly string[]).includes(value);
}

const LEVEL_ALIASES: Record<string, LogLevel> = { warning: 'warn', critical: 'fatal', err: 'error', off: 'silent', none: 'silent' };

/** A level as operators write it (`LOG_LEVEL=WARNING`, `error`, `debug`...), or undefined. */
export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  return isLogLevel(v) ? v : LEVEL_ALIASES[v];
}

const JWT = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const CREDENTIAL = /\b(Bearer|Basic|Digest)\s+[A-Za-z0-9._~+/=-]{4,}/gi;
const TOKEN_PARAM = /([?&;](?:access_token|id_token|refresh_token|token|api_key|apikey|key|code|password|passwd|secret|client_secret|signature|sig|session)=)[^&#\s"\\]*/gi;

/**
 * Masks what looks like a credential in a finished log line: JWTs, `Bearer`/`Basic` values, and token
 * query parameters. Registered secret values are masked separately (SecretRegistry).
 */
export function redactCredentials(line: string): string {
  let out = line;
  if (out.includes('eyJ')) out = out.replace(JWT, '[redacted]');
  if (out.includes('=')) out = out.replace(TOKEN_PARAM, '$1[redacted]');
  if (/bearer|basic|digest/i.test(out)) out = out.replace(CREDENTIAL, '$1 [redacted]');
  return out;
}

/** Header names never written to any log, at whatever depth they appear. */
const REDACT_PATHS = ['authorization', 'cookie', 'set-cookie', 'proxy-authorization', 'x-api-key', 'x-csrf-token'].flatMap((h) =>
  ['headers', '*.headers', 'requestHeaders', 'upstreamHeaders'].map((p) => (h.includes('-') ? `${p}["${h}"]` : `${p}.${h}`)),
);

/** Bytes gathered before a write, and the longest a line waits for it. */
const MIN_WRITE = 8 * 1024;
const FLUSH_INTERVAL_MS = 100;

/** Buffered bytes above which lines are dropped (and counted) rather than slowing the request path. */
const MAX_BUFFER = 16 * 1024 * 1024;

function fdOrPath(target: LogTarget): number | string {
  return target === 'stdout' ? 1 : target === 'stderr' ? 2 : target;
}

/** Error and audit lines (and an access log sharing their target): pino's stream, each line written at once. */
function destination(target: LogTarget, onDrop: () => void): DestinationStream | null {
  if (target === 'off') return null;
  const dest = fdOrPath(target);
  const stream = pino.destination({ dest, sync: false, mkdir: typeof dest === 'string', minLength: 0, maxLength: MAX_BUFFER });
  (stream as unknown as NodeJS.EventEmitter).on('drop', onDrop);
  return stream;
}


/**
 * pino's isoTime formats a Date for every line (1.6% of a full-policy request in bench/profile.ts);
 * at thousands of lines per second most lines share their millisecond, so the text is made once per ms.
 * Same output as pino.stdTimeFunctions.isoTime.
 */
let lastTimeMs = -1;
let lastTimeText = '';
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== lastTimeMs) {
    lastTimeMs = now;
    lastTimeText = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTimeText;
}

export function createLoggers(
  options: { level: LogLevel; access: LogTarget; audit: LogTarget; error: LogTarget },
  secrets: { current: SecretRegistry | null },
  onDrop: (log: string) => void = () => {},
): Loggers {
  const streams = new Map<LogTarget, DestinationStream | null>();
  const accessAlone = options.access !== options.error && options.access !== options.audit;
  const streamFor = (t: LogTarget, name: string) => {
    if (!streams.has(t)) streams.set(t, destination(t, () => onDrop(name)));
    return streams.get(t)!;
  };
  // A target the access log has to itself is written in batches of MIN_WRITE bytes, at most
  // FLUSH_INTERVAL_MS behind: one write(2) per line was most of the access log's cost under load.
  const accessWriter = accessAlone && options.access !== 'off'
    ? new LineWriter(fdOrPath(options.access), { batchBytes: MIN_WRITE, flushMs: FLUSH_INTERVAL_MS, maxBufferedBytes: MAX_BUFFER, onDrop: () => onDrop('access') })
    : null;
  const mask = (line: string) => {
    const out = redactCredentials(line);
    return secrets.current && secrets.current.size ? secrets.current.mask(out) : out;
  };
  // Audit and error lines may carry arbitrary objects (headers, errors): pino's path redaction applies.
  const make = (name: string, target: LogTarget, level: LogLevel): Logger => {
    const dest = streamFor(target, name);
    if (dest === null) return pino({ level: 'silent' });
    return pino(
      {
        level,
        base: { log: name },
        timestamp: isoTimeOncePerMs,
        redact: { paths: [...REDACT_PATHS, '*.secret', '*.password', 'token', '*.token'], censor: '[redacted]' },
        hooks: { streamWrite: mask },
      },
      dest,
    );
  };
  const accessLog = (): AccessLog => {
    // The access log's fields are a flat set built by RequestTelemetry, none of them a header map, so
    // no path redaction is needed.
    const dest = accessWriter ?? streamFor(options.access, 'access');
    if (dest === null) return ACCESS_OFF;
    return {
      enabled: true,
      write(fields) {
        // Never empty (request_id is always there), so slicing the brace off leaves `"k":v,...}`.
        dest.write(mask(`{"level":30${isoTimeOncePerMs()},"log":"access",${JSON.stringify(fields).slice(1)}\n`));
      },
    };
  };
  return {
    access: accessLog(),
    audit: make('audit', options.audit, 'info'),
    error: make('gateway', options.error, options.level),
    drain: async (timeoutMs) => {
      if (accessWriter === null) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([accessWriter.drain(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    },
    flush() {
      accessWriter?.flushSync();
      for (const s of streams.values()) {
        const sonic = s as unknown as { flushSync?: () => void };
        try {
          sonic?.flushSync?.();
        } catch {
          /* a stream not yet open has nothing to flush */
        }
      }
    },
  };
}

/**
 * A crash is written to the error log like any other line (so secrets in an error message are masked,
 * which Node's default stack print would not do), the buffers are flushed, and the process exits 1.
 */
export function logCrashes(log: Logger, flush: () => void): void {
  const crash = (kind: string) => (err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    log.fatal({ err: { type: e.name, message: e.message, stack: e.stack, code: (e as NodeJS.ErrnoException).code } }, kind);
    flush();
    process.exit(1);
  };
  process.once('uncaughtException', crash('uncaught exception'));
  process.once('unhandledRejection', crash('unhandled promise rejection'));
}
