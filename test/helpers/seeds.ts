// Helpers for the seed-app tests (test/e2e/seeds/): the shipped example policy with its listen addresses
// and upstream pointed at the test's processes, HTTP(S) requests trusting the test CA, and log lines.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { ROOT } from './gateway.ts';

/** The text of config/examples/NAME.yaml with each `from` replaced by `to` (addresses, upstream URLs). */
export function examplePolicy(name: string, replace: Record<string, string>): string {
  let text = readFileSync(join(ROOT, 'config/examples', `${name}.yaml`), 'utf8');
  for (const [from, to] of Object.entries(replace)) {
    if (!text.includes(from)) throw new Error(`example ${name} has no ${from}`);
    text = text.split(from).join(to);
  }
  return text;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  reason?: string;
}

/** A client that trusts `ca` (when given) and never follows redirects. */
export function client(ca?: Buffer) {
  const dispatcher = new Agent({ connect: ca ? { ca } : {}, pipelining: 0 });
  return {
    dispatcher,
    async send(url: string, options: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer } = {}): Promise<Answer> {
      const r = await request(url, { dispatcher, method: (options.method ?? 'GET') as 'GET', headers: options.headers, body: options.body });
      const text = await r.body.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: r.statusCode, headers: r.headers, text, json, reason: (json as { reason?: string } | undefined)?.reason };
    },
    close: () => dispatcher.close(),
  };
}

/** JSON lines of a log stream (non-JSON lines skipped). */
export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line still being written
    }
  }
  return out;
}

/** Audit lines (they carry an `action`) of a log stream. */
export function auditLines(text: string): Record<string, unknown>[] {
  return jsonLines(text).filter((l) => typeof l.action === 'string' && typeof l.outcome === 'string');
}

/** A multipart/form-data body with one file part. */
export function multipart(filename: string, type: string, content: Buffer, boundary = 'portcullis-boundary-7d1f'): { body: Buffer; contentType: string } {
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n`),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

export const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 1)]);
