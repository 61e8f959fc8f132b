import { describe, expect, it } from 'vitest';
import { median, medianOfRuns, percentile, summarize } from '../../scripts/bench/stats.js';

// The benchmark statistics shared by every bench (median of runs, latency percentiles).

describe('bench stats', () => {
  it('median of odd and even counts, NaN for none, input left unsorted', () => {
    const xs = [5, 1, 3];
    expect(median(xs)).toBe(3);
    expect(xs).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('percentiles interpolate between closest ranks', () => {
    const xs = Array.from({ length: 101 }, (_, i) => i);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile([1, 2], 50)).toBe(1.5);
    expect(percentile([7], 99)).toBe(7);
    expect(summarize([1, 2, 3, 4])).toMatchObject({ n: 4, min: 1, max: 4, p50: 2.5, mean: 2.5 });
  });

  it('medianOfRuns takes the median of every number, nested too', () => {
    const runs = [
      { a: 1, b: { c: 10 }, s: 'x' },
      { a: 3, b: { c: 30 }, s: 'y' },
      { a: 2, b: { c: 20 }, s: 'z' },
    ];
    expect(medianOfRuns(runs)).toEqual({ a: 2, b: { c: 20 }, s: 'x' });
  });
});
