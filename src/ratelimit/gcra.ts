// GCRA (generic cell rate algorithm), the same arithmetic in JS (memory store) and Lua (Redis store).
// A bucket is one number: its theoretical arrival time (TAT). A request of cost c is allowed when
// max(TAT, now) + c*T - tau <= now, and then TAT becomes max(TAT, now) + c*T. T = window/limit, tau =
// burst*T. From idle, exactly `burst` requests pass at once; after that one every T. Over any interval
// of length d at most burst + floor(d / T) requests pass. Each decision is exact and atomic.
import type { HitResult, Rate } from '../contract/rate-limit.ts';

export interface GcraOutcome extends HitResult {
  /** The TAT to store when allowed (unchanged when denied). */
  tat: number;
}

export function gcra(storedTat: number | undefined, now: number, cost: number, rate: Rate): GcraOutcome {
  const T = rate.intervalMs;
  const tau = rate.toleranceMs;
  const tat = storedTat === undefined || storedTat < now ? now : storedTat;
  const newTat = tat + cost * T;
  const allowAt = newTat - tau;
  if (allowAt > now) {
    return { allowed: false, remaining: Math.max(0, Math.floor((tau - (tat - now)) / T)), resetMs: Math.ceil(tat - now), retryAfterMs: Math.ceil(allowAt - now), tat };
  }
  return { allowed: true, remaining: Math.max(0, Math.floor((tau - (newTat - now)) / T)), resetMs: Math.ceil(newTat - now), retryAfterMs: 0, tat: newTat };
}

/**
 * Many requests of cost 1 for one bucket at one instant, decided at once: the first `allowed` of them
 * pass, exactly as if they had come one after another at `now` (the n-th passes when
 * max(TAT, now) + n*T - tau <= now). `offsetMs` is max(TAT, now) - now before the batch; with it,
 * `batchResult` gives each request the answer the one-by-one decision would have given.
 */
export interface GcraBatch {
  allowed: number;
  offsetMs: number;
  /** The TAT to store (unchanged when none was allowed). */
  tat: number;
}

export function gcraBatch(storedTat: number | undefined, now: number, count: number, rate: Rate): GcraBatch {
  const T = rate.intervalMs;
  const tat = storedTat === undefined || storedTat < now ? now : storedTat;
  const fit = Math.floor((now + rate.toleranceMs - tat) / T);
  const allowed = Math.max(0, Math.min(count, fit));
  return { allowed, offsetMs: tat - now, tat: tat + allowed * T };
}

/** The answer for the `index`-th request (0-based) of a batch, from the batch's outcome. */
export function batchResult(index: number, allowed: number, offsetMs: number, rate: Rate): HitResult {
  const T = rate.intervalMs;
  const tau = rate.toleranceMs;
  if (index < allowed) {
    const after = offsetMs + (index + 1) * T; // this request's TAT, relative to now
    return { allowed: true, remaining: Math.max(0, Math.floor((tau - after) / T)), resetMs: Math.ceil(after), retryAfterMs: 0 };
  }
  const full = offsetMs + allowed * T;
  return { allowed: false, remaining: Math.max(0, Math.floor((tau - full) / T)), resetMs: Math.ceil(full), retryAfterMs: Math.ceil(full + T - tau) };
}

/**
 * What both scripts start with: ARGV[1] = T (ms), ARGV[2] = tau (ms), ARGV[3] their amount; `now` from
 * the Redis server's clock; the bucket's stored TAT, never earlier than now.
 */
const GCRA_LUA_PREAMBLE = (amount: string) => `
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local ${amount} = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
`;

/**
 * The Redis side: KEYS[1] = bucket; ARGV = T (ms), tau (ms), cost. Uses the Redis server's clock, so
 * replicas with skewed clocks still share one exact count. The TAT is stored with 3 decimals through
 * string.format (Lua's tostring keeps only 14 digits, which would round epoch milliseconds). Cost 0 is a
 * look that writes nothing (refusal limits ask before they spend). Returns
 * {allowed 0|1, remaining, reset ms, retry-after ms}.
 */
export const GCRA_LUA = `${GCRA_LUA_PREAMBLE('cost')}local newTat = tat + cost * T
local allowAt = newTat - tau
if allowAt > now then
  local rem = math.floor((tau - (tat - now)) / T)
  if rem < 0 then rem = 0 end
  return {0, rem, math.ceil(tat - now), math.ceil(allowAt - now)}
end
local ttl = math.ceil(newTat - now)
if ttl < 1 then ttl = 1 end
if cost > 0 then redis.call('SET', KEYS[1], string.format('%.3f', newTat), 'PX', ttl) end
local rem = math.floor((tau - (newTat - now)) / T)
if rem < 0 then rem = 0 end
return {1, rem, ttl, 0}
`;

/**
 * The batch decision in Redis: KEYS[1] = bucket; ARGV = T (ms), tau (ms), count. Same clock and storage
 * as GCRA_LUA. Returns {allowed count, offset ms as text with 3 decimals} (see gcraBatch).
 */
export const GCRA_BATCH_LUA = `${GCRA_LUA_PREAMBLE('count')}local n = math.floor((now + tau - tat) / T)
if n > count then n = count end
if n < 0 then n = 0 end
if n > 0 then
  local newTat = tat + n * T
  local ttl = math.ceil(newTat - now)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', KEYS[1], string.format('%.3f', newTat), 'PX', ttl)
end
return {n, string.format('%.3f', tat - now)}
`;
