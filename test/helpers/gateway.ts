// Spawns the real gateway process (`node src/cli/main.ts start`) with a policy written to a temp file, and
// learns its bound addresses from what it prints. Listeners and admin use port 0 unless told otherwise.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'src/cli/main.ts');

export interface RunningGateway {
  proc: ChildProcess;
  /** Listener URLs in policy order. */
  urls: string[];
  url: string;
  admin: string;
  policyFile: string;
  stdout(): string;
  stderr(): string;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export function tempDir(prefix = 'portcullis-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writePolicy(text: string, dir = tempDir()): string {
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, text);
  return file;
}

export async function startGateway(
  policy: string,
  options: { env?: Record<string, string>; dir?: string; args?: string[]; listeners?: number } = {},
): Promise<RunningGateway> {
  const policyFile = writePolicy(policy, options.dir);
  const proc = spawn(process.execPath, [CLI, 'start', '--config', policyFile, ...(options.args ?? [])], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`gateway did not start in time\nstdout:\n${out}\nstderr:\n${err}`)), 20_000);
    const check = () => {
      if (/portcullis policy /.test(out)) {
        clearTimeout(timer);
        res();
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`gateway exited with ${code}\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
  const urls = [...out.matchAll(/portcullis listening on (\S+)/g)].map((m) => m[1]!);
  const admin = /portcullis admin on (\S+)/.exec(out)?.[1] ?? '';
  return {
    proc,
    urls,
    url: urls[0]!,
    admin,
    policyFile,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs the CLI to completion. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const proc = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    proc.once('exit', (code) => res({ code, stdout, stderr }));
  });
}

/** Polls until `probe` returns a value (logs are written asynchronously). */
export async function waitFor<T>(probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 5_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > until) throw new Error('waitFor: condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
