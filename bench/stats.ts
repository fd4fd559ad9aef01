// Summaries of interleaved rounds: a target's req/s is the median of its rounds, a ratio is the ratio of
// the medians, and its spread is the min-max of the per-round ratios (the same round's two measurements,
// taken minutes apart at most, so slow drift of the shared VM cancels out of each).

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Ratio {
  /** median(numerator) / median(denominator). */
  value: number;
  /** Smallest and largest of numerator[i] / denominator[i] over the rounds both were measured in. */
  min: number;
  max: number;
  perRound: number[];
}

const r2 = (v: number) => Math.round(v * 100) / 100;

/** Rounds are paired by index; a round missing on either side (NaN or undefined) is left out of the spread. */
export function ratioOfMedians(numerator: readonly number[], denominator: readonly number[]): Ratio | null {
  const perRound: number[] = [];
  for (let i = 0; i < Math.min(numerator.length, denominator.length); i++) {
    const n = numerator[i]!;
    const d = denominator[i]!;
    if (Number.isFinite(n) && Number.isFinite(d) && d > 0) perRound.push(n / d);
  }
  const dm = median(denominator.filter(Number.isFinite));
  if (perRound.length === 0 || !(dm > 0)) return null;
  return {
    value: r2(median(numerator.filter(Number.isFinite)) / dm),
    min: r2(Math.min(...perRound)),
    max: r2(Math.max(...perRound)),
    perRound: perRound.map(r2),
  };
}

/** `1.62x (1.55-1.70)`; one round: `1.62x`. */
export function formatRatio(r: Ratio | null): string {
  if (!r) return '';
  const v = `${r.value.toFixed(2)}x`;
  return r.perRound.length > 1 ? `${v} (${r.min.toFixed(2)}–${r.max.toFixed(2)})` : v;
}
