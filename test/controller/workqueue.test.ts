import { describe, expect, it } from 'vitest';
import { WorkQueue, runWorkers, type Clock } from '../../controller/workqueue.js';

// client-go workqueue semantics, on a clock the test moves by hand (no real waits).

function fakeClock() {
  let now = 0;
  const timers: Array<{ at: number; fn: () => void; id: number }> = [];
  let ids = 0;
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const t = { at: now + ms, fn, id: ++ids };
      timers.push(t);
      return t.id;
    },
    clearTimeout: (id) => {
      const i = timers.findIndex((t) => t.id === id);
      if (i >= 0) timers.splice(i, 1);
    },
  };
  const advance = (ms: number) => {
    now += ms;
    for (const t of timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at)) {
      timers.splice(timers.indexOf(t), 1);
      t.fn();
    }
  };
  return { clock, advance, pending: () => timers.length };
}

const limits = { baseDelayMs: 100, maxDelayMs: 1000, qps: 10, burst: 3 };

describe('work queue', () => {
  it('queues a key added twice once, and hands it out again if added while it is processed', async () => {
    const q = new WorkQueue(limits, fakeClock().clock);
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    q.add('a'); // while processing: not handed out until done
    expect(await q.get()).toBe('b');
    let third: string | undefined;
    void q.get().then((k) => (third = k));
    await Promise.resolve();
    expect(third).toBeUndefined();
    q.done('a');
    await Promise.resolve();
    expect(third).toBe('a');
  });

  it('never runs a key concurrently with itself', async () => {
    const q = new WorkQueue(limits, fakeClock().clock);
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const workers = runWorkers(q, 4, async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs++;
      await new Promise((r) => setImmediate(r));
      running--;
    }, () => {});
    for (let i = 0; i < 20; i++) {
      q.add('k');
      await new Promise((r) => setImmediate(r));
    }
    while (q.length) await new Promise((r) => setImmediate(r));
    q.shutDown();
    await workers;
    expect(maxRunning).toBe(1);
    expect(runs).toBeGreaterThan(1);
  });

  it('backs a failing key off exponentially up to the cap, and forget resets it', () => {
    const { clock, advance } = fakeClock();
    const q = new WorkQueue({ ...limits, burst: 100 }, clock);
    expect([1, 2, 3, 4, 5, 6].map(() => q.addRateLimited('a'))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(q.numRequeues('a')).toBe(6);
    q.forget('a');
    expect(q.addRateLimited('a')).toBe(100);
    // The first pending re-add wins; it arrives after its delay.
    expect(q.length).toBe(0);
    advance(99);
    expect(q.length).toBe(0);
    advance(1);
    expect(q.length).toBe(1);
  });

  it('limits re-adds of all keys together with a token bucket (qps, burst)', () => {
    const { clock, advance } = fakeClock();
    const q = new WorkQueue({ baseDelayMs: 1, maxDelayMs: 1, qps: 10, burst: 3 }, clock);
    // Three go at once (the burst), then one every 100 ms.
    expect(['a', 'b', 'c', 'd', 'e'].map((k) => q.addRateLimited(k))).toEqual([1, 1, 1, 100, 200]);
    advance(1000);
    expect(q.addRateLimited('f')).toBe(1);
  });

  it('a plain add is never rate limited, and shutDown ends waiting getters', async () => {
    const { clock } = fakeClock();
    const q = new WorkQueue({ baseDelayMs: 1000, maxDelayMs: 1000, qps: 1, burst: 1 }, clock);
    q.addRateLimited('a');
    q.add('a');
    expect(await q.get()).toBe('a');
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toBeUndefined();
  });
});
