import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Throttle } from '../../agent/fetch/throttle.js';

// The node's one bandwidth budget (fetch.bandwidth): every download takes its bytes from the same
// Throttle. Checked on the throttle's own accounting under a fake clock, so no timing can flake.

const KiB = 1024;
const MiB = 1024 * KiB;

beforeEach(() => void vi.useFakeTimers({ now: 0 }));
afterEach(() => void vi.useRealTimers());

/** `n` downloads each taking `total` bytes in `chunk`s from one throttle; every grant recorded. */
async function share(throttle: Throttle, n: number, total: number, chunk: number, signals: Array<AbortSignal | undefined> = []) {
  const grants: Array<{ who: number; at: number; bytes: number }> = [];
  const outcomes: Array<'done' | 'aborted' | undefined> = Array.from({ length: n }, () => undefined);
  const runs = Array.from({ length: n }, async (_, who) => {
    try {
      for (let got = 0; got < total; got += chunk) {
        await throttle.take(chunk, signals[who]);
        grants.push({ who, at: Date.now(), bytes: chunk });
      }
      outcomes[who] = 'done';
    } catch {
      outcomes[who] = 'aborted';
    }
  });
  const all = Promise.all(runs);
  while (outcomes.some((o) => o === undefined)) await vi.advanceTimersByTimeAsync(5);
  await all;
  return { grants, outcomes };
}

describe('one bandwidth budget for the node', () => {
  it('three downloads sharing one Throttle get, together, no more than its rate', async () => {
    const rate = 1 * MiB;
    const throttle = new Throttle(rate, () => Date.now());
    const burst = Math.max(16 * KiB, rate / 8);
    const chunk = 64 * KiB;
    const { grants } = await share(throttle, 3, 1 * MiB, chunk);
    expect(grants).toHaveLength(3 * 16);
    // At every instant, all bytes let through so far fit in the burst plus the rate times the
    // time elapsed, plus the one chunk each download may take on credit.
    let sum = 0;
    for (const g of grants) {
      sum += g.bytes;
      expect(sum).toBeLessThanOrEqual(burst + (rate * g.at) / 1000 + 3 * chunk);
    }
    // 3 MiB at 1 MiB/s: about 3 s for all of them, not 1 s (which one budget each would give).
    const end = Math.max(...grants.map((g) => g.at));
    expect(end).toBeGreaterThanOrEqual(((3 * MiB - burst - 3 * chunk) / rate) * 1000);
    expect(end).toBeLessThanOrEqual(((3 * MiB) / rate) * 1000 + 100);
    // Shared fairly: half-way through, each has had a fair part, none is starved.
    const half = grants.filter((g) => g.at <= end / 2);
    for (const who of [0, 1, 2]) expect(half.filter((g) => g.who === who).length).toBeGreaterThanOrEqual(4);
  });

  it('a download cancelled while it waits for the budget leaves at once; the others go on', async () => {
    const throttle = new Throttle(256 * KiB, () => Date.now());
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('superseded')), 500);
    const { outcomes, grants } = await share(throttle, 2, 512 * KiB, 64 * KiB, [ac.signal, undefined]);
    expect(outcomes).toEqual(['aborted', 'done']);
    const firstAfterAbort = grants.filter((g) => g.who === 0 && g.at > 500);
    expect(firstAfterAbort).toEqual([]);
  });
});
