// Small statistics for benchmarks: medians of runs and latency percentiles.

/** The median of `xs` (mean of the two middle values for an even count); NaN when empty. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The p-th percentile (0-100) of `xs`, linear interpolation between closest ranks; NaN when empty. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

/** p50, p90, p99, min, max and mean of `xs`. */
export function summarize(xs: number[]): { n: number; min: number; p50: number; p90: number; p99: number; max: number; mean: number } {
  return {
    n: xs.length,
    min: xs.length ? Math.min(...xs) : NaN,
    p50: percentile(xs, 50),
    p90: percentile(xs, 90),
    p99: percentile(xs, 99),
    max: xs.length ? Math.max(...xs) : NaN,
    mean: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN,
  };
}

/** For each numeric key (nested objects too), the median across `runs`; other values from the first run. */
export function medianOfRuns<T extends Record<string, unknown>>(runs: T[]): T {
  const first = runs[0];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(first)) {
    if (typeof v === 'number') out[k] = median(runs.map((r) => r[k] as number));
    else if (v && typeof v === 'object' && !Array.isArray(v)) out[k] = medianOfRuns(runs.map((r) => r[k] as Record<string, unknown>));
    else out[k] = v;
  }
  return out as T;
}

/** Rounds a number to `digits` decimals (for printing figures). */
export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
