// pino loggers: access (one line per request), audit (who did what, separate stream) and error/app log.
// Every registered secret is masked and credential headers are never written.
import pino, { type DestinationStream, type Logger } from 'pino';
import type { SecretRegistry } from '../config/secrets.ts';

export type LogTarget = 'stdout' | 'stderr' | 'off' | string;

export interface Loggers {
  access: Logger;
  audit: Logger;
  error: Logger;
  flush(): void;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LEVELS)[number];

export function isLogLevel(value: string): value is LogLevel {
  return (LEVELS as readonly string[]).includes(value);
}

function destination(target: LogTarget): DestinationStream | null {
  if (target === 'off') return null;
  if (target === 'stdout') return pino.destination({ dest: 1, sync: false });
  if (target === 'stderr') return pino.destination({ dest: 2, sync: false });
  return pino.destination({ dest: target, sync: false, mkdir: true });
}

export function createLoggers(
  options: { level: LogLevel; access: LogTarget; audit: LogTarget; error: LogTarget },
  secrets: { current: SecretRegistry | null },
): Loggers {
  const streams = new Map<LogTarget, DestinationStream | null>();
  const streamFor = (t: LogTarget) => {
    if (!streams.has(t)) streams.set(t, destination(t));
    return streams.get(t)!;
  };
  const mask = (line: string) => (secrets.current && secrets.current.size ? secrets.current.mask(line) : line);
  const make = (name: string, target: LogTarget, level: LogLevel): Logger => {
    const dest = streamFor(target);
    if (dest === null) return pino({ level: 'silent' });
    return pino(
      {
        level,
        base: { log: name },
        timestamp: pino.stdTimeFunctions.isoTime,
        redact: {
          paths: ['headers.authorization', 'headers.cookie', 'headers["set-cookie"]', 'headers["proxy-authorization"]', '*.secret', '*.password', 'token'],
          censor: '[redacted]',
        },
        hooks: { streamWrite: mask },
      },
      dest,
    );
  };
  return {
    access: make('access', options.access, 'info'),
    audit: make('audit', options.audit, 'info'),
    error: make('gateway', options.error, options.level),
    flush() {
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
