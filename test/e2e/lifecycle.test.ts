// Reload without dropping requests, graceful shutdown, workers, and refusing a bad policy at start.
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startGateway, waitFor, writePolicy, type RunningGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/redis-server.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function policy(upstream: RecordingUpstream, extra = '', header = 'v1', listen = '127.0.0.1:0'): string {
  return `
version: 1
listeners:
  - address: ${listen}
admin: { address: 127.0.0.1:0 }
limits: { shutdown_grace: 10s }
upstreams:
  app: { url: "${upstream.url}" }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: app
    response_headers: { add: { x-policy: ${header} } }
${extra}`;
}

function get(url: string, agent?: Agent | false): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function post(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function setup(extra = ''): Promise<{ upstream: RecordingUpstream; gw: RunningGateway }> {
  const upstream = await startUpstream();
  const gw = await startGateway(policy(upstream, extra));
  cleanup.push(() => upstream.close(), () => gw.stop());
  return { upstream, gw };
}

describe('reload', () => {
  it('reloads on POST /reload, SIGHUP and file change; a bad file keeps the old policy', async () => {
    const { upstream, gw } = await setup();
    expect((await get(gw.url + '/')).headers['x-policy']).toBe('v1');

    writeFileSync(gw.policyFile, policy(upstream, '', 'v2'));
    // The file watcher may pick it up first; either way POST /reload answers with the policy now in force.
    const r = await post(gw.admin + '/reload');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).status).toBe('reloaded');
    expect((await get(gw.url + '/')).headers['x-policy']).toBe('v2');

    writeFileSync(gw.policyFile, policy(upstream, '', 'v3'));
    gw.proc.kill('SIGHUP');
    await waitFor(async () => (await get(gw.url + '/')).headers['x-policy'] === 'v3');
    await waitFor(() => gw.stderr().includes('policy reloaded'));

    writeFileSync(gw.policyFile, policy(upstream, '', 'v4').replace('path_prefix: /', 'path_prefx: /'));
    const bad = await post(gw.admin + '/reload');
    expect(bad.status).toBe(422);
    const body = JSON.parse(bad.body) as { reason: string; errors: string[] };
    expect(body.reason).toBe('policy_invalid');
    expect(body.errors[0]).toMatch(/policy\.yaml:\d+:\d+: unknown key "path_prefx" \(did you mean "path_prefix"\?\)/);
    expect((await get(gw.url + '/')).headers['x-policy']).toBe('v3');
    const metrics = await get(gw.admin + '/metrics');
    expect(metrics.body).toMatch(/portcullis_policy_reloads_total\{result="failure"\} [1-9]/);
  });

  it('drops no request while the policy is reloaded 10 times under load', async () => {
    const { upstream, gw } = await setup();
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    let ok = 0;
    let failed = 0;
    let running = true;
    const worker = async () => {
      while (running) {
        try {
          const r = await get(gw.url + '/load', agent);
          if (r.status === 200) ok++;
          else failed++;
        } catch {
          failed++;
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    for (let i = 0; i < 10; i++) {
      writeFileSync(gw.policyFile, policy(upstream, '', `r${i}`));
      const r = await post(gw.admin + '/reload');
      expect(r.status).toBe(200);
      await new Promise((res) => setTimeout(res, 50));
    }
    running = false;
    await Promise.all(workers);
    agent.destroy();
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(100);
  });
});

describe('graceful shutdown', () => {
  it('finishes an in-flight slow request, reports not ready, then exits 0', async () => {
    const { upstream, gw } = await setup();
    upstream.handler = (_req, res) => setTimeout(() => res.end('slow but complete'), 1_500);
    const inflight = get(gw.url + '/slow');
    await waitFor(() => upstream.received.length === 1);
    gw.proc.kill('SIGTERM');
    await waitFor(() => gw.stderr().includes('shutting down'));
    const ready = await get(gw.admin + '/readyz').catch(() => null);
    if (ready) expect(ready.status).toBe(503);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(r.body).toBe('slow but complete');
    expect(await gw.exited).toBe(0);
  });
});

describe('workers', () => {
  it('runs N workers sharing the listener and replaces a dead one', async () => {
    const { gw } = await setup('workers: 2\n');
    const pids = new Set<string>();
    for (let i = 0; i < 20; i++) expect((await get(gw.url + '/w')).status).toBe(200);
    const ready = await get(gw.admin + '/readyz');
    expect(JSON.parse(ready.body).checks.workers).toBe('2/2');
    // Kill one worker: the primary starts a replacement and the gateway keeps answering.
    const { execFileSync } = await import('node:child_process');
    const children = execFileSync('pgrep', ['-P', String(gw.proc.pid)]).toString().trim().split('\n');
    expect(children.length).toBe(2);
    process.kill(Number(children[0]), 'SIGKILL');
    // Wait until the primary has seen the death and started a replacement (a new pid beside the survivor).
    const workersNow = () => {
      try {
        return execFileSync('pgrep', ['-P', String(gw.proc.pid)]).toString().trim().split('\n');
      } catch {
        return [];
      }
    };
    await waitFor(() => {
      const now = workersNow();
      return now.length === 2 && !now.includes(children[0]!);
    }, 10_000);
    await waitFor(async () => JSON.parse((await get(gw.admin + '/readyz')).body).checks.workers === '2/2', 10_000);
    for (const c of workersNow()) pids.add(c);
    expect(pids.has(children[0]!)).toBe(false);
    expect((await get(gw.url + '/w')).status).toBe(200);
    const metrics = await get(gw.admin + '/metrics');
    expect(metrics.body).toMatch(/portcullis_requests_total\{[^}]*route="all"[^}]*\} \d+/);
  });
});

/** Inodes of the TCP sockets listening on `port` (IPv4 loopback), from /proc/net/tcp. */
function listeningInodes(port: number): Set<string> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const rows = readFileSync('/proc/net/tcp', 'utf8').trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  return new Set(rows.filter((r) => r[1]!.endsWith(':' + hexPort) && r[3] === '0A').map((r) => r[9]!));
}

/** Socket inodes a process holds open. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // closed while reading
    }
  }
  return out;
}

describe.runIf(process.platform === 'linux')('workers accept their own connections', () => {
  it('each worker listens on its own SO_REUSEPORT socket; the primary holds none', async () => {
    const upstream = await startUpstream();
    const port = await freePort();
    const gw = await startGateway(policy(upstream, 'workers: 2\n', 'v1', `127.0.0.1:${port}`));
    cleanup.push(() => upstream.close(), () => gw.stop());
    await waitFor(async () => JSON.parse((await get(gw.admin + '/readyz')).body).checks.workers === '2/2', 10_000);
    const { execFileSync } = await import('node:child_process');
    const workers = execFileSync('pgrep', ['-P', String(gw.proc.pid)]).toString().trim().split('\n').map(Number);
    expect(workers.length).toBe(2);
    const listening = listeningInodes(port);
    // Two listening sockets on one port: one per worker (a shared handle would be one socket).
    expect(listening.size).toBe(2);
    for (const pid of workers) expect([...socketInodes(pid)].filter((i) => listening.has(i)).length).toBe(1);
    expect([...socketInodes(gw.proc.pid!)].filter((i) => listening.has(i))).toEqual([]);
    // And fresh connections are served (each its own, so the kernel spreads them).
    for (let i = 0; i < 20; i++) expect((await get(gw.url + '/w')).status).toBe(200);
    expect(upstream.received.length).toBe(20);
  });
});

describe('refusing a bad policy', () => {
  it('does not start, and names every problem with FILE:LINE:COLUMN', async () => {
    const file = writePolicy('version: 1\nlisteners:\n  - address: 127.0.0.1:0\n    tls: { cert: a }\nroutes:\n  - match: { path: /x }\n    upstream: nope\n    timeout: soon\n');
    const r = await runCli(['start', '--config', file]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toContain(`${file}:4:10: missing required key "key"`);
    expect(lines).toContain(`${file}:7:15: unknown upstream "nope" (no upstreams are defined)`);
    expect(lines.some((l) => l.startsWith(`${file}:8:14: invalid duration`))).toBe(true);
    expect(r.stdout).not.toContain('listening');
  });
});
