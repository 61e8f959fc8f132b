import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Semaphore } from '../../agent/reconcile/semaphore.js';

/** One turn of the event loop: lets every pending promise job run. */
const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Semaphore', () => {
  it('lets `capacity` holders in at once; the next waits until one gives its slot back', async () => {
    const s = new Semaphore(2);
    const a = await s.acquire();
    const b = await s.acquire();
    expect(s.inUse).toBe(2);
    let thirdIn = false;
    const third = s.acquire().then((r) => ((thirdIn = true), r));
    await tick();
    expect(thirdIn).toBe(false);
    expect(s.waiting).toBe(1);
    a();
    const c = await third;
    expect(s.inUse).toBe(2);
    b();
    c();
    expect(s.inUse).toBe(0);
  });

  it('grants slots in call order, and tryAcquire does not jump the queue', async () => {
    const s = new Semaphore(1);
    const order: number[] = [];
    const first = await s.acquire();
    const waiters = [1, 2, 3].map((n) => s.acquire().then((release) => (order.push(n), release)));
    expect(s.tryAcquire()).toBeUndefined();
    first();
    for (const w of waiters) (await w)();
    expect(order).toEqual([1, 2, 3]);
    const free = s.tryAcquire();
    expect(free).toBeTypeOf('function');
    free!();
  });

  it('a release called twice frees one slot only', async () => {
    const s = new Semaphore(1);
    const release = await s.acquire();
    const second = s.acquire();
    const third = s.acquire();
    release();
    release();
    const r2 = await second;
    let thirdIn = false;
    void third.then(() => (thirdIn = true));
    await tick();
    expect(thirdIn).toBe(false);
    r2();
    (await third)();
    expect(s.inUse).toBe(0);
  });

  it('a waiter whose signal aborts leaves the queue with the reason, never holds a slot, and the others keep their order', async () => {
    const s = new Semaphore(1);
    const holder = await s.acquire();
    const ac = new AbortController();
    const quitter = s.acquire(ac.signal);
    const after = s.acquire();
    const reason = new Error('gave up');
    ac.abort(reason);
    await expect(quitter).rejects.toBe(reason);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(s.waiting).toBe(1);
    holder();
    (await after)();
    expect(s.inUse).toBe(0);
  });

  it('rejects at once on a signal already aborted, and removes the abort listener once granted', async () => {
    const s = new Semaphore(1);
    const reason = new Error('too late');
    await expect(s.acquire(AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(s.inUse).toBe(0);
    const holder = await s.acquire();
    const ac = new AbortController();
    const waiter = s.acquire(ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    holder();
    (await waiter)();
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new Semaphore(0)).toThrow(/capacity/);
    expect(() => new Semaphore(1.5)).toThrow(/capacity/);
  });

  // A schedule of acquires on one semaphore, played on the real event loop: each is made at some
  // turn, holds its slot for some turns, and may be given up (aborted) at some turn.
  it('never has more than `capacity` holders, grants waiters in call order, and lets every waiter not given up in', async () => {
    const job = fc.record({ at: fc.nat({ max: 6 }), hold: fc.nat({ max: 4 }), abortAt: fc.option(fc.nat({ max: 10 }), { nil: undefined }) });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(job, { maxLength: 12 }), async (capacity, jobs) => {
        const s = new Semaphore(capacity);
        let holders = 0;
        let most = 0;
        const granted: number[] = [];
        const outcome: Array<'granted' | 'aborted' | undefined> = jobs.map(() => undefined);
        const controllers = jobs.map(() => new AbortController());
        const made: number[] = [];
        const running: Array<Promise<void>> = [];
        const last = Math.max(0, ...jobs.map((j) => Math.max(j.at, j.abortAt ?? 0))) + 1;
        for (let turn = 0; turn <= last; turn++) {
          jobs.forEach((j, i) => j.abortAt === turn && controllers[i].abort(new Error(`job ${i}`)));
          jobs.forEach((j, i) => {
            if (j.at !== turn) return;
            made.push(i);
            running.push(
              s.acquire(controllers[i].signal).then(
                async (release) => {
                  outcome[i] = 'granted';
                  granted.push(i);
                  most = Math.max(most, ++holders);
                  for (let t = 0; t < j.hold; t++) await tick();
                  holders--;
                  release();
                },
                () => void (outcome[i] = 'aborted'),
              ),
            );
          });
          await tick();
        }
        await Promise.all(running);
        expect(most).toBeLessThanOrEqual(capacity);
        expect(outcome.every((o) => o !== undefined)).toBe(true);
        // Only a job whose signal aborted is left out; the grants follow the order the calls were made.
        outcome.forEach((o, i) => o === 'aborted' && expect(controllers[i].signal.aborted).toBe(true));
        expect(granted).toEqual(made.filter((i) => outcome[i] === 'granted'));
        expect(s.inUse).toBe(0);
        expect(s.waiting).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
