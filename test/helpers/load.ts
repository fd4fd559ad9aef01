// A small closed-loop load generator over keep-alive connections: each of `concurrency` clients sends one
// request after the other and records status, reason and duration, until stopped.
import { Agent, request } from 'node:http';

export interface Sample {
  at: number;
  status: number;
  reason: string | undefined;
  ms: number;
  ratelimit: string | undefined;
}

export function send(url: string, agent?: Agent, headers: Record<string, string> = {}, timeoutMs = 5_000): Promise<Sample> {
  const at = Date.now();
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(url, { agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => {
        let reason: string | undefined;
        if (res.headers['content-type']?.includes('problem+json')) reason = (JSON.parse(body) as { reason?: string }).reason;
        resolve({ at, status: res.statusCode ?? 0, reason, ms: performance.now() - t0, ratelimit: res.headers.ratelimit as string | undefined });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => resolve({ at, status: 0, reason: err.message, ms: performance.now() - t0, ratelimit: undefined }));
    req.end();
  });
}

export interface Load {
  samples: Sample[];
  stop(): Promise<Sample[]>;
}

export function startLoad(url: string, concurrency: number, headers: Record<string, string> = {}): Load {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const samples: Sample[] = [];
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      samples.push(await send(url, agent, headers));
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  return {
    samples,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return samples;
    },
  };
}
