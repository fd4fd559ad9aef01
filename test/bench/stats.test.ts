import { describe, expect, it } from 'vitest';
import { formatRatio, median, ratioOfMedians } from '../../bench/stats.ts';

describe('round statistics', () => {
  it('takes the median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('reports the ratio of medians and the spread of per-round ratios', () => {
    const r = ratioOfMedians([150, 100, 210], [100, 80, 100]);
    // medians 150 / 100; rounds 1.5, 1.25, 2.1
    expect(r).toEqual({ value: 1.5, min: 1.25, max: 2.1, perRound: [1.5, 1.25, 2.1] });
    expect(formatRatio(r)).toBe('1.50x (1.25–2.10)');
    expect(formatRatio(ratioOfMedians([5], [10]))).toBe('0.50x');
  });

  it('leaves rounds out where a side is missing, and gives nothing without a pair', () => {
    expect(ratioOfMedians([10, NaN, 30], [10, 20, 10])?.perRound).toEqual([1, 3]);
    expect(ratioOfMedians([10], [])).toBeNull();
    expect(formatRatio(null)).toBe('');
  });
});
