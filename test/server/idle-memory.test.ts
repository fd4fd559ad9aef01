// The idle release's decision (when a compacting GC runs) on an injected clock, and the real collection.
import { describe, expect, it } from 'vitest';
import { GROWTH_BYTES, IdleMemoryRelease, QUIET_MS, heapFootprint, type ReleaseMode } from '../../src/server/idle-memory.ts';

const MiB = 1024 * 1024;

function rig(mode: ReleaseMode, options: { footprint?: number } = {}) {
  const state = { now: 0, started: 0, footprint: options.footprint ?? 50 * MiB, mode, collections: 0 };
  const release = new IdleMemoryRelease({
    started: () => state.started,
    mode: () => state.mode,
    now: () => state.now,
    footprint: () => state.footprint,
    collect: () => {
      state.collections++;
      state.footprint = 20 * MiB; // what the compaction leaves
    },
  });
  /** Advances the clock by `ms` in check-sized steps, checking at each, as the timer does. */
  const idle = (ms: number) => {
    for (let t = 0; t < ms; t += 250) {
      state.now += 250;
      release.check();
    }
  };
  const request = () => {
    state.started++;
    state.now += 10;
    release.check();
  };
  return { state, release, idle, request };
}

describe('memory release, startup (the default)', () => {
  it('releases once in the first quiet second after start (the compile leaves garbage), not before', () => {
    const r = rig('startup');
    r.idle(QUIET_MS - 250);
    expect(r.state.collections).toBe(0);
    r.idle(250);
    expect(r.state.collections).toBe(1);
    r.idle(10 * QUIET_MS);
    expect(r.state.collections).toBe(1);
  });

  it('never after a load: the JIT has warmed up by then, and a compacting GC would throw its work away', () => {
    const r = rig('startup');
    r.idle(QUIET_MS);
    r.request();
    r.state.footprint = 80 * MiB;
    r.idle(10 * QUIET_MS);
    expect(r.state.collections).toBe(1);
  });

  it('not at all when a request comes before the first quiet second', () => {
    const r = rig('startup');
    r.idle(QUIET_MS - 250);
    r.request();
    r.state.footprint = 80 * MiB;
    r.idle(10 * QUIET_MS);
    expect(r.state.collections).toBe(0);
  });
});

describe('memory release, when_idle', () => {
  it('never collects while requests keep starting, however long the load lasts', () => {
    const r = rig('when_idle');
    for (let i = 0; i < 1_000; i++) {
      r.state.now += QUIET_MS - 20; // gaps just shorter than the quiet window
      r.request();
    }
    expect(r.state.collections).toBe(0);
    r.idle(QUIET_MS);
    expect(r.state.collections).toBe(1);
    r.idle(10 * QUIET_MS); // one release per quiet period
    expect(r.state.collections).toBe(1);
  });

  it('after a release, collects again only once the heap grew by GROWTH_BYTES', () => {
    const r = rig('when_idle');
    r.idle(QUIET_MS);
    expect(r.state.collections).toBe(1); // footprint now 20 MiB
    r.request();
    r.state.footprint = 20 * MiB + GROWTH_BYTES - 1; // sporadic traffic: a little growth
    r.idle(QUIET_MS);
    expect(r.state.collections).toBe(1);
    r.request();
    r.state.footprint = 20 * MiB + GROWTH_BYTES; // a load
    r.idle(QUIET_MS);
    expect(r.state.collections).toBe(2);
  });

  it('reports what it freed and how long it paused', () => {
    let now = 0;
    let footprint = 64 * MiB;
    let seen: { before: number; after: number; pauseMs: number } | null = null;
    const release = new IdleMemoryRelease({
      started: () => 0,
      mode: () => 'when_idle',
      now: () => now,
      footprint: () => footprint,
      collect: () => (footprint = 24 * MiB),
      onRelease: (x) => (seen = x),
    });
    now = QUIET_MS;
    expect(release.check()).toMatchObject({ before: 64 * MiB, after: 24 * MiB });
    expect(seen).toMatchObject({ before: 64 * MiB, after: 24 * MiB });
    expect(seen!.pauseMs).toBeGreaterThanOrEqual(0);
  });
});

describe('memory release, off and switched by a reload', () => {
  it('does nothing when off, and releases at the next check once a reload turns it on', () => {
    const r = rig('off');
    r.idle(5 * QUIET_MS);
    expect(r.state.collections).toBe(0);
    r.state.mode = 'when_idle';
    r.idle(250);
    expect(r.state.collections).toBe(1);
  });

  it('the real collection shrinks a heap grown by garbage', () => {
    let junk: object[] | null = [];
    for (let i = 0; i < 300_000; i++) junk.push({ i, s: 'x'.repeat(20) + i });
    junk = null;
    const grown = heapFootprint();
    let now = 0;
    const release = new IdleMemoryRelease({ started: () => 0, mode: () => 'startup', now: () => now });
    now = QUIET_MS;
    const made = release.check();
    expect(made).not.toBeNull();
    expect(made!.before).toBeGreaterThanOrEqual(grown - MiB);
    expect(made!.after).toBeLessThan(made!.before - 8 * MiB);
    expect(junk).toBeNull();
  });
});
