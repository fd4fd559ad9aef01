// Bounds for tests of a rate limit through a running gateway that hold whatever the machine's speed.
//
// A GCRA limit of N per window lets a burst of N through, then one more per window/N. How many of a run
// of requests pass therefore depends on how long the run took, so the bound is derived from the elapsed
// time, never fixed. And with `on_redis_failure: local`, a request Redis does not answer within the
// command timeout (a busy machine can stall it) is counted by the process' own fallback bucket, which
// holds the same bound on its own: the gateway's decision counters say which bucket answered each one.
import { expect } from 'vitest';
import type { RunningGateway } from './gateway.ts';
import { metricSum } from './metrics.ts';

/** At most how many requests a limit of `limit` per `windowMs` lets through in `elapsedMs`: the burst,
 *  one per emission interval elapsed, and one for the interval under way. */
export function gcraAllowedAtMost(limit: number, windowMs: number, elapsedMs: number): number {
  return limit + Math.ceil(elapsedMs / (windowMs / limit)) + 1;
}

export interface LimitedRun<T> {
  answers: T[];
  elapsedMs: number;
  /** Requests each bucket let through during the run, from the gateway's decision counters. */
  allowedBy: { redis: number; local: number; memory: number };
  /** The most any one bucket may have let through in the run's elapsed time. */
  allowedAtMost: number;
}

/**
 * Sends `concurrency` requests at a time until `limitedWanted` of them were refused with 429 (or 1,000
 * were sent), timing the run from before the first request to after the last answer.
 */
export async function runUntilLimited<T extends { status: number }>(
  gw: RunningGateway,
  send: () => Promise<T>,
  o: { route: string; limit: string; perWindow: number; windowMs: number; concurrency: number; limitedWanted: number },
): Promise<LimitedRun<T>> {
  const allowed = (source: string) => metricSum(gw, 'portcullis_rate_limit_decisions_total', { route: o.route, limit: o.limit, decision: 'allowed', source });
  const sources = ['redis', 'local', 'memory'] as const;
  const before = await Promise.all(sources.map(allowed));
  const started = performance.now();
  const answers: T[] = [];
  let limited = 0;
  while (limited < o.limitedWanted && answers.length < 1_000) {
    for (const a of await Promise.all(Array.from({ length: o.concurrency }, send))) {
      answers.push(a);
      if (a.status === 429) limited++;
    }
  }
  const elapsedMs = performance.now() - started;
  const after = await Promise.all(sources.map(allowed));
  const [redis, local, memory] = sources.map((_, i) => after[i]! - before[i]!) as [number, number, number];
  return { answers, elapsedMs, allowedBy: { redis, local, memory }, allowedAtMost: gcraAllowedAtMost(o.perWindow, o.windowMs, elapsedMs) };
}

/**
 * What every run through a limit must show: each answer is `allowedStatus` (what the upstream says to an
 * allowed request) or 429; the allowed answers are exactly those the decision counters record; and no
 * bucket let more through than the run's elapsed time allows. Returns how many were allowed.
 */
export function expectWithinLimit(run: LimitedRun<{ status: number }>, allowedStatus = 200): number {
  expect(run.answers.filter((r) => r.status !== allowedStatus && r.status !== 429).map((r) => r.status)).toEqual([]);
  const allowed = run.answers.filter((r) => r.status === allowedStatus).length;
  const { redis, local, memory } = run.allowedBy;
  expect(redis + local + memory).toBe(allowed);
  for (const bucket of [redis, local, memory]) expect(bucket).toBeLessThanOrEqual(run.allowedAtMost);
  return allowed;
}
