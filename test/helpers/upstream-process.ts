// An upstream as a separate process (so a test can SIGKILL it mid-load): `node upstream-process.ts` runs
// the server; `startUpstreamProcess()` spawns it and learns its port. It answers every request with JSON
// naming the instance, after DELAY_MS; GET /healthz answers HEALTH_STATUS (200 by default).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface UpstreamProcess {
  proc: ChildProcess;
  name: string;
  url: string;
  port: number;
  kill(): Promise<void>;
}

export async function startUpstreamProcess(name: string, options: { delayMs?: number; healthStatus?: number } = {}): Promise<UpstreamProcess> {
  const proc = spawn(process.execPath, [import.meta.filename], {
    env: { ...process.env, UPSTREAM_NAME: name, DELAY_MS: String(options.delayMs ?? 0), HEALTH_STATUS: String(options.healthStatus ?? 200) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`upstream ${name} exited with ${code}`)));
  });
  return {
    proc,
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

if (process.argv[1] === import.meta.filename) {
  const name = process.env.UPSTREAM_NAME ?? 'upstream';
  const delay = Number(process.env.DELAY_MS ?? 0);
  const health = Number(process.env.HEALTH_STATUS ?? 200);
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/healthz') {
        res.writeHead(health, { 'content-type': 'text/plain' });
        res.end(String(health));
        return;
      }
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
        res.end(JSON.stringify({ name, method: req.method, url: req.url, host: req.headers.host }));
      };
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
}
