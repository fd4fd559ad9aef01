// GCRA (generic cell rate algorithm), the same arithmetic in JS (memory store) and Lua (Redis store).
// A bucket is one number: its theoretical arrival time (TAT). A request of cost c is allowed when
// max(TAT, now) + c*T - tau <= now, and then TAT becomes max(TAT, now) + c*T. T = window/limit, tau =
// burst*T. From idle, exactly `burst` requests pass at once; after that one every T. Over any interval
// of length d at most burst + floor(d / T) requests pass. Each decision is exact and atomic.
import type { HitResult, Rate } from './types.ts';

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
 * The Redis side: KEYS[1] = bucket; ARGV = T (ms), tau (ms), cost. Uses the Redis server's clock, so
 * replicas with skewed clocks still share one exact count. The TAT is stored with 3 decimals through
 * string.format (Lua's tostring keeps only 14 digits, which would round epoch milliseconds). Cost 0 is a
 * look that writes nothing (refusal limits ask before they spend). Returns
 * {allowed 0|1, remaining, reset ms, retry-after ms}.
 */
export const GCRA_LUA = `
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local newTat = tat + cost * T
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
