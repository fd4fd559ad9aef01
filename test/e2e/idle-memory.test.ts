// The memory release in a running gateway: by default the garbage of start-up is given back in the first
// quiet second; `limits.release_memory: off` never releases, and a reload to `when_idle` releases after a
// load. When it runs is decided by unit tests (test/server/idle-memory.test.ts); what it buys is measured
// by the bench's memory readings.
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.ts';
import { metricSum } from '../helpers/metrics.ts';
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function policy(upstream: RecordingUpstream, release?: 'startup' | 'when_idle' | 'off'): string {
  return `
version: 1
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
${release === undefined ? '' : `limits: { release_memory: ${release} }`}
upstreams:
  app: { url: "${upstream.url}" }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: app
`;
}

const releases = (gw: RunningGateway) => metricSum(gw, 'portcullis_idle_memory_releases_total');

describe('idle memory release', () => {
  it('gives the start-up garbage back by default and never when off; reloaded to when_idle, it releases after a load', async () => {
    const upstream = await startUpstream();
    cleanup.push(() => upstream.close());
    // Started side by side, so by the time the default one has released, the other has been idle as long.
    const [on, off] = await Promise.all([startGateway(policy(upstream)), startGateway(policy(upstream, 'off'))]);
    cleanup.push(() => on.stop(), () => off.stop());

    await waitFor(async () => (await releases(on)) >= 1, 30_000);
    expect(await metricSum(on, 'portcullis_idle_memory_released_bytes_total')).toBeGreaterThan(1024 * 1024);
    expect(await metricSum(on, 'portcullis_idle_memory_release_pause_seconds_total')).toBeGreaterThan(0);
    // One more quiet window for the one turned off, measured by the other's next check having run.
    const onUp = Date.now();
    await waitFor(() => Date.now() - onUp > 1_500, 5_000);
    expect(await releases(off)).toBe(0);

    writeFileSync(off.policyFile, policy(upstream, 'when_idle'));
    const r = await fetch(`${off.admin}/reload`, { method: 'POST' });
    expect(r.status).toBe(200);
    // A load, then quiet: when_idle releases (its first release needs no growth: none came before it).
    const big = 'x'.repeat(8 * 1024);
    for (let i = 0; i < 4; i++) {
      await Promise.all(Array.from({ length: 25 }, () => fetch(off.url + '/load', { headers: { 'x-filler': big } }).then((a) => a.arrayBuffer())));
    }
    await waitFor(async () => (await releases(off)) >= 1, 30_000);

    // Requests still go through after the collections.
    const answer = await fetch(on.url + '/after');
    expect(answer.status).toBe(200);
    expect(upstream.received.some((x) => x.url === '/after')).toBe(true);
  });
});
