import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyedMutex } from '../../shared/keyed-mutex.js';

/** One turn of the event loop: lets every pending promise job and I/O callback run. */
const tick = () => new Promise<void>((r) => setImmediate(r));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('KeyedMutex', () => {
  it('runs calls for one key one after the other, in call order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const gate = deferred();
    const first = m.run('k', async () => {
      log.push('1 start');
      await gate.promise;
      log.push('1 end');
    });
    const second = m.run('k', () => log.push('2'));
    const third = m.run('k', () => log.push('3'));
    await tick();
    expect(log).toEqual(['1 start']);
    gate.resolve();
    await Promise.all([first, second, third]);
    expect(log).toEqual(['1 start', '1 end', '2', '3']);
  });

  it('does not make a key wait for another key', async () => {
    const m = new KeyedMutex();
    const gate = deferred();
    const a = m.run('a', () => gate.promise);
    await expect(m.run('b', () => 'b done')).resolves.toBe('b done');
    expect(m.busy('a')).toBe(true);
    gate.resolve();
    await a;
  });

  it('passes the turn on when the holder throws', async () => {
    const m = new KeyedMutex();
    const failing = m.run('k', () => Promise.reject(new Error('boom')));
    const next = m.run('k', () => 'next');
    await expect(failing).rejects.toThrow('boom');
    await expect(next).resolves.toBe('next');
  });

  it('rejects a waiter whose signal aborts with its reason, never runs it, and keeps the others in order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const gate = deferred();
    const holder = m.run('k', () => gate.promise.then(() => log.push('holder')));
    const ac = new AbortController();
    const quitter = m.run('k', () => log.push('quitter'), ac.signal);
    const after = m.run('k', () => log.push('after'));
    const reason = new Error('gave up');
    ac.abort(reason);
    await expect(quitter).rejects.toBe(reason);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    // The holder still holds: the one behind the quitter waits for it, not for the quitter.
    await tick();
    expect(log).toEqual([]);
    gate.resolve();
    await Promise.all([holder, after]);
    expect(log).toEqual(['holder', 'after']);
  });

  it('rejects at once, without queueing, on a signal that is already aborted', async () => {
    const m = new KeyedMutex();
    const reason = new Error('too late');
    let ran = false;
    await expect(m.run('k', () => (ran = true), AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(ran).toBe(false);
    expect(m.size).toBe(0);
  });

  it('removes a waiter\'s abort listener once it gets the lock', async () => {
    const m = new KeyedMutex();
    const gate = deferred();
    const holder = m.run('k', () => gate.promise);
    const ac = new AbortController();
    const waiter = m.run('k', () => 'ran', ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    gate.resolve();
    await holder;
    await expect(waiter).resolves.toBe('ran');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('acquire hands out a release that frees the key once, however often it is called', async () => {
    const m = new KeyedMutex();
    const release = await m.acquire('k');
    const second = m.acquire('k');
    const third = m.acquire('k');
    release();
    release(); // a second call must not let `third` in beside `second`
    const releaseSecond = await second;
    let thirdIn = false;
    void third.then(() => (thirdIn = true));
    await tick();
    expect(thirdIn).toBe(false);
    releaseSecond();
    (await third)();
    expect(m.size).toBe(0);
  });

  it('forgets a key once nobody holds or waits for it, and idle() resolves then', async () => {
    const m = new KeyedMutex();
    const gate = deferred();
    for (let i = 0; i < 100; i++) void m.run(`k${i}`, () => undefined);
    const held = m.run('held', () => gate.promise);
    const ac = new AbortController();
    const waiting = m.run('held', () => undefined, ac.signal);
    expect(m.size).toBe(101);
    ac.abort();
    await waiting.catch(() => {});
    let idle = false;
    const idled = m.idle().then(() => (idle = true));
    await tick();
    expect(m.size).toBe(1);
    expect(idle).toBe(false);
    gate.resolve();
    await held;
    await idled;
    expect(m.size).toBe(0);
    expect(m.busy('held')).toBe(false);
  });

  it('takes any value as a key, objects by identity', async () => {
    const m = new KeyedMutex<object>();
    const a = {};
    const b = {};
    const gate = deferred();
    const onA = m.run(a, () => gate.promise);
    await m.run(b, () => undefined);
    expect(m.busy(a)).toBe(true);
    expect(m.busy(b)).toBe(false);
    gate.resolve();
    await onA;
    expect(m.size).toBe(0);
  });
});

// A schedule of calls on a few keys, played on the real event loop: each call is made at some
// turn, holds its key for some turns (or fails), and may be given up (its signal aborted) at some
// turn — before it is made, while it waits, or while it runs.
interface Job {
  key: 'a' | 'b' | 'c';
  submitAt: number;
  hold: number;
  fails: boolean;
  abortAt: number | undefined;
}

const jobArb: fc.Arbitrary<Job> = fc.record({
  key: fc.constantFrom('a' as const, 'b' as const, 'c' as const),
  submitAt: fc.nat({ max: 6 }),
  hold: fc.nat({ max: 4 }),
  fails: fc.boolean(),
  abortAt: fc.option(fc.nat({ max: 12 }), { nil: undefined }),
});

interface Outcome {
  violations: string[];
  /** Per key, the jobs (by submission number) in the order they started. */
  starts: Map<string, number[]>;
  started: boolean[];
  abortedBeforeStart: boolean[];
  settled: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }>;
  reasons: Error[];
  sizeAfter: number;
}

async function play(jobs: Job[]): Promise<Outcome> {
  const m = new KeyedMutex();
  const violations: string[] = [];
  const active = new Map<string, number>();
  const starts = new Map<string, number[]>();
  const started = jobs.map(() => false);
  const abortedBeforeStart = jobs.map(() => false);
  const unfinished = jobs.map(() => false);
  const controllers = jobs.map(() => new AbortController());
  const reasons = jobs.map((_, i) => new Error(`job ${i} gave up`));
  const settled: Outcome['settled'] = [];
  const promises: Array<Promise<void>> = [];
  const lastTurn = Math.max(0, ...jobs.map((j) => Math.max(j.submitAt, j.abortAt ?? 0))) + 1;
  // Submission order: by turn, then by place in the schedule.
  const order = jobs.map((_, i) => i).sort((x, y) => jobs[x].submitAt - jobs[y].submitAt || x - y);
  const seq = new Map(order.map((i, n) => [i, n]));

  for (let turn = 0; turn <= lastTurn; turn++) {
    jobs.forEach((j, i) => {
      if (j.abortAt !== turn) return;
      if (!started[i]) abortedBeforeStart[i] = true;
      controllers[i].abort(reasons[i]);
    });
    for (const i of order) {
      const j = jobs[i];
      if (j.submitAt !== turn) continue;
      // Nothing before it on its key: it must start before the next turn, whatever the other keys do.
      const free = !jobs.some((o, k) => k !== i && o.key === j.key && unfinished[k]);
      unfinished[i] = true;
      const p = m.run(
        j.key,
        async () => {
          if (controllers[i].signal.aborted) violations.push(`job ${i} started after its signal aborted`);
          if ((active.get(j.key) ?? 0) > 0) violations.push(`job ${i} started while key ${j.key} was held`);
          active.set(j.key, (active.get(j.key) ?? 0) + 1);
          started[i] = true;
          starts.set(j.key, [...(starts.get(j.key) ?? []), seq.get(i)!]);
          for (let t = 0; t < j.hold; t++) await tick();
          active.set(j.key, active.get(j.key)! - 1);
          if (j.fails) throw new Error(`job ${i} failed`);
          return i;
        },
        controllers[i].signal,
      );
      promises[i] = p.then(
        (value) => void (settled[i] = { ok: true, value }),
        (err) => void (settled[i] = { ok: false, err }),
      ).finally(() => (unfinished[i] = false));
      if (free) {
        void tick().then(() => {
          if (!started[i] && !abortedBeforeStart[i]) violations.push(`job ${i} on a free key ${j.key} did not start within a turn`);
        });
      }
    }
    await tick();
  }
  await Promise.all(promises);
  return { violations, starts, started, abortedBeforeStart, settled, reasons, sizeAfter: m.size };
}

const PROPERTY = { seed: 42, numRuns: 1000 };
const schedules = fc.array(jobArb, { minLength: 1, maxLength: 16 });

describe('KeyedMutex, for every schedule of calls and aborts', () => {
  it('never lets two calls of one key run at once, and never holds one key up for another', async () => {
    await fc.assert(
      fc.asyncProperty(schedules, async (jobs) => {
        expect((await play(jobs)).violations).toEqual([]);
      }),
      PROPERTY,
    );
  });

  it('starts the calls of a key in the order they were made, those given up left out', async () => {
    await fc.assert(
      fc.asyncProperty(schedules, async (jobs) => {
        const { starts } = await play(jobs);
        for (const seqs of starts.values()) expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      }),
      PROPERTY,
    );
  });

  it('never runs a call given up before its turn, rejects it with its reason, and still runs every other call', async () => {
    await fc.assert(
      fc.asyncProperty(schedules, async (jobs) => {
        const o = await play(jobs);
        jobs.forEach((j, i) => {
          if (o.abortedBeforeStart[i]) {
            expect(o.started[i]).toBe(false);
            expect(o.settled[i]).toEqual({ ok: false, err: o.reasons[i] });
          } else {
            expect(o.started[i]).toBe(true);
            if (j.fails) expect(o.settled[i]).toMatchObject({ ok: false, err: { message: `job ${i} failed` } });
            else expect(o.settled[i]).toEqual({ ok: true, value: i });
          }
        });
      }),
      PROPERTY,
    );
  });

  it('keeps no entry once every call has settled', async () => {
    await fc.assert(
      fc.asyncProperty(schedules, async (jobs) => {
        expect((await play(jobs)).sizeAfter).toBe(0);
      }),
      PROPERTY,
    );
  });
});
