// Redis servers of a test's own, on free ports: a single server (to kill, pause, restart, SCRIPT FLUSH),
// a 3-master Cluster (`redis-cli --cluster create`) and a master + replica + Sentinel set-up. Never the
// shared 127.0.0.1:6379, which other tests use with their own key prefixes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './gateway.ts';

/** Ports this test process was already given: the kernel may hand a closed one out again. */
const handedOut = new Set<number>();

/**
 * A free loopback port, never one this process was given before (a test that reserves ports for
 * gateways it starts later must not see the same port go to another server in between).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

export function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface OwnRedis {
  port: number;
  url: string;
  proc: ChildProcess | null;
  cli(...args: string[]): Promise<string>;
  /** SIGKILL: the server vanishes mid-command. */
  kill(): Promise<void>;
  /** Start again on the same port. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(options: { port?: number; args?: string[]; dir?: string } = {}): Promise<OwnRedis> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? tempDir('portcullis-redis-');
  const r: OwnRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc: null,
    cli: (...args) => redisCli(port, ...args),
    async start() {
      const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...(options.args ?? [])], { stdio: 'ignore' });
      r.proc = proc;
      await waitFor(async () => (await redisCli(port, 'ping')) === 'PONG', `redis-server on ${port}`);
    },
    async kill() {
      const p = r.proc;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise((res) => p.once('exit', res));
      p.kill('SIGKILL');
      await exited;
      r.proc = null;
    },
    async stop() {
      await r.kill();
    },
  };
  await r.start();
  return r;
}

export interface OwnCluster {
  ports: number[];
  url: string;
  nodes: OwnRedis[];
  stop(): Promise<void>;
}

/** Three masters, no replicas, slots spread by `redis-cli --cluster create`. */
export async function startCluster(): Promise<OwnCluster> {
  const dir = tempDir('portcullis-cluster-');
  const nodes: OwnRedis[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    nodes.push(await startRedis({ port, dir, args: ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000'] }));
  }
  const ports = nodes.map((n) => n.port);
  await new Promise<void>((resolve, reject) => {
    execFile('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 20_000 }, (err, _out, stderr) =>
      err ? reject(new Error(`cluster create: ${stderr || err.message}`)) : resolve());
  });
  for (const n of nodes) await waitFor(async () => (await n.cli('cluster', 'info')).includes('cluster_state:ok'), `cluster state ok on ${n.port}`);
  return {
    ports,
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    nodes,
    async stop() {
      for (const n of nodes) await n.stop();
    },
  };
}

export interface OwnSentinel {
  master: OwnRedis;
  replica: OwnRedis;
  sentinelPort: number;
  sentinel: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** A master, its replica, and one Sentinel (quorum 1) watching them as `mymaster`. */
export async function startSentinel(): Promise<OwnSentinel> {
  const dir = tempDir('portcullis-sentinel-');
  const master = await startRedis({ dir });
  const replica = await startRedis({ dir, args: ['--replicaof', '127.0.0.1', String(master.port)] });
  await waitFor(async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'), 'replica link');
  const sentinelPort = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, [
    `port ${sentinelPort}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
    'sentinel down-after-milliseconds mymaster 1000',
    'sentinel failover-timeout mymaster 5000',
    'sentinel parallel-syncs mymaster 1',
    '',
  ].join('\n'));
  const sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  await waitFor(async () => (await redisCli(sentinelPort, 'sentinel', 'get-master-addr-by-name', 'mymaster')).includes(String(master.port)), 'sentinel');
  return {
    master,
    replica,
    sentinelPort,
    sentinel,
    url: `redis+sentinel://127.0.0.1:${sentinelPort}/mymaster`,
    async stop() {
      sentinel.kill('SIGKILL');
      await master.stop();
      await replica.stop();
    },
  };
}

export { sleep, waitFor };
