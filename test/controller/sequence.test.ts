import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Sequencer } from '../../controller/sequence.js';

describe('Sequencer', () => {
  it('strictly increases whatever the clock does, and continues above a raised floor', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.record({ clock: fc.integer({ min: 0, max: 2e12 }) }), fc.record({ floor: fc.integer({ min: 0, max: 2e15 }) })), { maxLength: 200 }), (steps) => {
        let clock = 0;
        const seq = new Sequencer(() => clock);
        let last = -1;
        let floor = 0;
        for (const step of steps) {
          if ('floor' in step) {
            seq.raise(step.floor);
            floor = Math.max(floor, step.floor);
            continue;
          }
          clock = step.clock;
          const n = seq.next();
          expect(n).toBeGreaterThan(last);
          expect(n).toBeGreaterThan(floor);
          expect(Number.isSafeInteger(n)).toBe(true);
          last = n;
        }
      }),
      { seed: 14, numRuns: 300 },
    );
  });

  it('follows the clock in microseconds when it moves forward', () => {
    let clock = 1_700_000_000_000;
    const seq = new Sequencer(() => clock);
    expect(seq.next()).toBe(1_700_000_000_000_000);
    expect(seq.next()).toBe(1_700_000_000_000_001);
    clock += 5;
    expect(seq.next()).toBe(1_700_000_000_005_000);
  });
});
