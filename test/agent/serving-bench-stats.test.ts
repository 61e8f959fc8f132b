import { describe, expect, it } from 'vitest';
import { compareLoads } from '../../scripts/bench/loadgen.js';
import { parseSmapsRollup, sumMem } from '../../scripts/bench/proc-mem.js';
import { targetsMet } from '../../scripts/bench/serving.js';
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

  it('reads private (clean + dirty), PSS and RSS from smaps_rollup, and sums processes', () => {
    const text = [
      '55a0c0000000-7ffd4b7fe000 ---p 00000000 00:00 0                          [rollup]',
      'Rss:               91236 kB',
      'Pss:               38110 kB',
      'Pss_Anon:          20000 kB',
      'Shared_Clean:      50000 kB',
      'Private_Clean:      1024 kB',
      'Private_Dirty:     24576 kB',
      '',
    ].join('\n');
    expect(parseSmapsRollup(text)).toEqual({ rss: 91236 * 1024, pss: 38110 * 1024, private: 25600 * 1024 });
    expect(parseSmapsRollup('')).toEqual({ rss: 0, pss: 0, private: 0 });
    expect(sumMem([{ rss: 1, private: 2, pss: 3 }, { rss: 10, private: 20, pss: 30 }])).toEqual({ rss: 11, private: 22, pss: 33 });
  });

  it('compares a load with its baseline: ratio of requests/s, added p50 and p99', () => {
    expect(compareLoads({ reqPerSec: 1000, p50Ms: 1, p99Ms: 2 }, { reqPerSec: 900, p50Ms: 1.25, p99Ms: 2.5 })).toEqual({ ratio: 0.9, p50AddedMs: 0.25, p99AddedMs: 0.5 });
  });

  it("says which of issue 10's targets the figures meet", () => {
    const ok = { tinyRatio: 0.9, servingPrivateMiB10: 59.9, failedDuringSwitches: 0, agentRestartFailed: 0, binarySpeedup: 3 };
    expect(Object.values(targetsMet(ok)).every(Boolean)).toBe(true);
    expect(targetsMet({ ...ok, tinyRatio: 0.89, servingPrivateMiB10: 60, failedDuringSwitches: 1, agentRestartFailed: 2, binarySpeedup: 2.9 })).toEqual({
      tinyRatio: false,
      servingPrivateMiB10: false,
      failedDuringSwitches: false,
      agentRestartFailed: false,
      binarySpeedup: false,
    });
  });
});
