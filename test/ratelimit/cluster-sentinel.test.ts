// The Redis store on a real 3-master Cluster and a real Sentinel set-up, started here with redis-server
// and redis-cli: exact counts, hash-tagged keys spread over masters, and a Sentinel failover followed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, parseRedisUrl, type RedisTarget } from '../../src/ratelimit/redis.ts';
import { makeRate } from '../../src/contract/rate-limit.ts';
import { startCluster, startSentinel, waitFor, type OwnCluster, type OwnSentinel } from '../helpers/redis-server.ts';

function store(url: string, events: string[] = []) {
  return new RedisStore(parseRedisUrl(url) as RedisTarget, {
    connectTimeoutMs: 1000,
    commandTimeoutMs: 200,
    probeMs: 100,
    onStateChange: (up, reason) => events.push(`${up ? 'up' : 'down'}:${reason}`),
  });
}

describe('Redis Cluster (3 masters)', () => {
  let cluster: OwnCluster;
  let s: RedisStore;
  beforeAll(async () => {
    cluster = await startCluster();
    s = store(cluster.url);
    await s.ready();
  }, 40_000);
  afterAll(async () => {
    await s?.close();
    await cluster?.stop();
  });

  it('counts exactly, each bucket in its own slot, buckets spread over the masters', async () => {
    expect(s.available).toBe(true);
    const rate = makeRate(50, 3_600_000);
    const keys = Array.from({ length: 30 }, (_, i) => `portcullis:rl:{per_ip:i10.0.0.${i}}`);
    const results = await Promise.all(keys.flatMap((k) => Array.from({ length: 60 }, () => s.hit(k, 1, Date.now(), rate).then((r) => [k, r.allowed] as const))));
    for (const k of keys) expect(results.filter(([key, ok]) => key === k && ok).length).toBe(50);
    const perNode = await Promise.all(cluster.nodes.map(async (n) => Number((await n.cli('dbsize')))));
    expect(perNode.reduce((a, b) => a + b, 0)).toBe(30);
    expect(perNode.filter((n) => n > 0).length).toBe(3);
  });

  it('a dead master fails its requests within the timeout, and the store comes back when it returns', async () => {
    const rate = makeRate(1000, 60_000);
    const node = cluster.nodes[0]!;
    // A key served by the first node.
    const ranges = (await node.cli('cluster', 'nodes')).split('\n').find((l) => l.includes('myself'))!.split(' ').slice(8)
      .map((r) => r.split('-').map(Number) as [number, number?]);
    let key = '';
    for (let i = 0; key === ''; i++) {
      const slot = Number(await node.cli('cluster', 'keyslot', `{dead:${i}}`));
      if (ranges.some(([a, b]) => slot >= a && slot <= (b ?? a))) key = `{dead:${i}}`;
    }
    await node.kill();
    const t0 = performance.now();
    await expect(s.hit(key, 1, Date.now(), rate)).rejects.toThrow(/unavailable/);
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(s.available).toBe(false);
    await node.start();
    await waitFor(async () => (await node.cli('cluster', 'info')).includes('cluster_state:ok'), 'cluster ok again', 15_000);
    await waitFor(async () => {
      try {
        await s.hit(key, 1, Date.now(), rate);
        return s.available;
      } catch {
        return false;
      }
    }, 'store back on the cluster', 10_000);
  }, 40_000);
});

describe('Redis Sentinel', () => {
  let set: OwnSentinel;
  let s: RedisStore;
  const events: string[] = [];
  beforeAll(async () => {
    set = await startSentinel();
    s = store(set.url, events);
    await s.ready();
  }, 40_000);
  afterAll(async () => {
    await s?.close();
    await set?.stop();
  });

  it('finds the master through Sentinel and counts there', async () => {
    expect(s.available).toBe(true);
    const rate = makeRate(5, 3_600_000);
    const r = await Promise.all(Array.from({ length: 8 }, () => s.hit('{sentinel:a}', 1, Date.now(), rate)));
    expect(r.filter((x) => x.allowed).length).toBe(5);
    expect(await set.master.cli('exists', '{sentinel:a}')).toBe('1');
  });

  it('follows a failover to the promoted replica', async () => {
    await set.master.kill();
    // Sentinel notices after down-after-milliseconds (1s), then promotes the replica.
    await waitFor(async () => (await set.replica.cli('role')).startsWith('master'), 'replica promoted', 20_000);
    await waitFor(async () => {
      try {
        await s.hit('{sentinel:b}', 1, Date.now(), makeRate(5, 60_000));
        return s.available;
      } catch {
        return false;
      }
    }, `store on the new master (${events.join(', ')})`, 10_000);
    expect(await set.replica.cli('exists', '{sentinel:b}')).toBe('1');
    expect(events[0]).toBe('up:connected');
    expect(events).toContain('up:answering again');
  }, 40_000);
});
