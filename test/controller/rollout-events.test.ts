import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rolloutEvents, type RolloutEvent } from '../../controller/rollout/events.js';
import { stepRollout } from '../../controller/rollout/step.js';
import type { RolloutStatus } from '../../controller/rollout/types.js';
import type { RolloutSpec, StatusContent } from '../../shared/index.js';

// Pure: which Kubernetes Events one rollout step is worth, from the state before and after it.
// Only transitions write: the same state twice (a replan, a restart reading status.rollout back)
// writes nothing.

const base: RolloutStatus = { revision: 'r1', state: 'Progressing', batch: 1, batches: 3, fromVersion: '1', toVersion: '2', reason: 'BatchProgressing', message: 'batch 1/3: 0/2 serving 2' };
const at = (over: Partial<RolloutStatus>): RolloutStatus => ({ ...base, ...over });
const brief = (es: RolloutEvent[]) => es.map((e) => `${e.type} ${e.reason}`);

describe('rollout events', () => {
  it('a new revision starts a rollout: from -> to and how many batches', () => {
    const es = rolloutEvents(undefined, base);
    expect(brief(es)).toEqual(['Normal RolloutStarted']);
    expect(es[0].note).toBe('rollout r1 started: 1 -> 2 in 3 batches');
    // A newer revision replaces a rollout in progress.
    const next = rolloutEvents(at({ batch: 2 }), at({ revision: 'r2', fromVersion: '1', toVersion: '3' }));
    expect(brief(next)).toEqual(['Normal RolloutStarted']);
    expect(next[0].note).toContain('1 -> 3');
    expect(next[0].key).not.toBe(es[0].key);
  });

  it('each batch that starts is one Normal BatchStarted, keyed by revision and batch', () => {
    const es = rolloutEvents(base, at({ batch: 2 }));
    expect(brief(es)).toEqual(['Normal BatchStarted']);
    expect(es[0].note).toBe('batch 2/3 started: its nodes get 2');
    expect(es[0].key).toBe('r1/2');
    expect(rolloutEvents(at({ batch: 2 }), at({ batch: 3 }))[0].key).toBe('r1/3');
  });

  it('a pause says why (the reason and the hint in its message); a resume says so', () => {
    for (const reason of ['PausedByUser', 'AwaitingResume', 'BatchPause', 'NodesDeferred']) {
      const message = `batch 1/3 done; hint for ${reason}`;
      const es = rolloutEvents(base, at({ state: 'Paused', reason, message }));
      expect(brief(es)).toEqual(['Normal RolloutPaused']);
      expect(es[0].note).toBe(`${reason}: ${message}`);
    }
    const paused = at({ state: 'Paused', reason: 'AwaitingResume', message: 'set spec.rollout.resumeBatch to 2 to start the next batch' });
    // A pause that changes its reason is a new line; a resume into the next batch is two.
    expect(brief(rolloutEvents(paused, at({ state: 'Paused', reason: 'PausedByUser', message: 'm' })))).toEqual(['Normal RolloutPaused']);
    const resumed = rolloutEvents(paused, at({ batch: 2 }));
    expect(brief(resumed)).toEqual(['Normal RolloutResumed', 'Normal BatchStarted']);
    expect(resumed[0].note).toBe('resumed after AwaitingResume in batch 1/3');
    // Released deferred nodes: the same batch goes on.
    expect(brief(rolloutEvents(at({ state: 'Paused', reason: 'NodesDeferred' }), base))).toEqual(['Normal RolloutResumed']);
  });

  it('clearing spec.rollout.abort (a retry of the same revision) is a line, and a second abort or batch start after it is not swallowed by the first one\'s key', () => {
    const first = at({ batchStartTime: '2026-12-02T10:00:00.000Z' });
    const aborted = at({ batchStartTime: '2026-12-02T10:00:00.000Z', state: 'Aborted', reason: 'AbortedByUser', message: 'aborted by spec.rollout.abort in batch 1/3' });
    const abort1 = rolloutEvents(first, aborted);
    const retried = at({ batchStartTime: '2026-12-02T10:05:00.000Z' });
    const retry = rolloutEvents(aborted, retried);
    expect(brief(retry)).toEqual(['Normal RolloutStarted']);
    expect(retry[0].note).toBe('rollout r1 started again (spec.rollout.abort cleared): 1 -> 2 in 3 batches');
    const abort2 = rolloutEvents(retried, { ...aborted, batchStartTime: retried.batchStartTime });
    expect(brief(abort2)).toEqual(['Warning RolloutAborted']);
    expect(abort2[0].key).not.toBe(abort1[0].key);
    const batch2a = rolloutEvents(first, at({ batch: 2, batchStartTime: '2026-12-02T10:01:00.000Z' }));
    const batch2b = rolloutEvents(retried, at({ batch: 2, batchStartTime: '2026-12-02T10:06:00.000Z' }));
    expect(batch2b[0].key).not.toBe(batch2a[0].key);
  });

  it('the same revision rolled out again later (1 -> 2 -> 1 -> 2) is a new start and a new end, not the first run\'s keys', () => {
    const run = (t: string) => [rolloutEvents(at({ revision: 'r0', state: 'Complete' }), at({ batchStartTime: t })), rolloutEvents(at({ batch: 3, batchStartTime: t }), at({ batch: 3, batchStartTime: t, state: 'Complete', reason: 'RolloutComplete' }))];
    const [first, again] = [run('2026-12-02T10:00:00.000Z'), run('2026-12-02T11:00:00.000Z')];
    expect(brief(first[0])).toEqual(['Normal RolloutStarted']);
    expect(again[0][0].key).not.toBe(first[0][0].key);
    expect(again[1][0].key).not.toBe(first[1][0].key);
  });

  it('an abort is a Warning with its reason and message; completion is Normal', () => {
    for (const reason of ['FailureThresholdExceeded', 'AbortedByUser', 'ProgressDeadlineExceeded']) {
      const es = rolloutEvents(base, at({ state: 'Aborted', reason, message: '1 of 2 nodes of batch 1/3 failed (threshold 1)' }));
      expect(brief(es)).toEqual(['Warning RolloutAborted']);
      expect(es[0].note).toBe(`${reason}: 1 of 2 nodes of batch 1/3 failed (threshold 1); nodes not reached keep 1`);
    }
    const done = rolloutEvents(at({ batch: 3 }), at({ batch: 3, state: 'Complete', reason: 'RolloutComplete', message: '3 batches done' }));
    expect(brief(done)).toEqual(['Normal RolloutComplete']);
    expect(done[0].note).toBe('rollout r1 complete: 2 on every node, 3 batches done');
  });

  it('one plan that crosses several steps writes each of them, in order', () => {
    // A new revision whose canary already serves and whose next batch has nothing to wait on.
    const es = rolloutEvents(at({ revision: 'r0', state: 'Complete' }), at({ batch: 2, state: 'Paused', reason: 'BatchPause', message: 'batch 2/3 done; batch 3 starts at T' }));
    expect(brief(es)).toEqual(['Normal RolloutStarted', 'Normal BatchStarted', 'Normal RolloutPaused']);
    expect(brief(rolloutEvents(undefined, at({ state: 'Aborted', reason: 'AbortedByUser', message: 'm' })))).toEqual(['Normal RolloutStarted', 'Warning RolloutAborted']);
  });

  it('the same state twice writes nothing (a replan, or a new leader reading status.rollout back)', () => {
    for (const s of [base, at({ state: 'Paused', reason: 'AwaitingResume' }), at({ state: 'Aborted', reason: 'AbortedByUser' }), at({ state: 'Complete', batch: 3 })]) {
      expect(rolloutEvents(s, structuredClone(s))).toEqual([]);
    }
    // Counts that move inside a batch are no event.
    expect(rolloutEvents(at({ batchServing: 0 }), at({ batchServing: 1, message: 'batch 1/3: 1/2 serving 2' }))).toEqual([]);
  });

  it('a restarted controller that has not heard the nodes yet writes nothing: a batch done stays done', () => {
    const batches = [['a', 'b'], ['c'], ['d']];
    const serving = new Map<string, StatusContent>(['a', 'b'].map((n) => [n, { node: n, namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Serving', servingVersion: '2', targetVersion: '2', time: new Date(0).toISOString() }]));
    const step = (spec: RolloutSpec, reports: Map<string, StatusContent>, prev?: RolloutStatus) => stepRollout({ spec, revision: 'r1', toVersion: '2', batches, reports, prev, fallbackFrom: '1', now: 5000 });
    for (const spec of [{ pauseUntilResumed: true }, { paused: true }, { pauseSeconds: 60 }] satisfies RolloutSpec[]) {
      const paused = step(spec, serving, step(spec, new Map()));
      expect(paused.state).toBe('Paused');
      // Read back from status, with no report in memory yet: still the same pause, no line written.
      const afterRestart = step(spec, new Map(), structuredClone(paused));
      expect(afterRestart).toMatchObject({ state: 'Paused', reason: paused.reason, batch: 1 });
      expect(rolloutEvents(paused, afterRestart)).toEqual([]);
    }
  });

  it('over any run of patches and reports, no two consecutive Events are the same, and a replayed state writes none', () => {
    const batches = [['a'], ['b', 'c'], ['d']];
    const nodes = batches.flat();
    const phase = fc.constantFrom<'none' | 'serving' | 'servingOld' | 'failed' | 'deferred'>('none', 'serving', 'serving', 'serving', 'serving', 'servingOld', 'failed', 'deferred');
    const stepArb = fc.record({
      // Mostly one revision (steps within it), now and then a new one; an abort now and then.
      version: fc.integer({ min: 0, max: 7 }).map((n) => (n === 0 ? '3' : '2')),
      paused: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
      abort: fc.integer({ min: 0, max: 19 }).map((n) => n === 0),
      resumeBatch: fc.integer({ min: 0, max: 4 }),
      advanceMs: fc.integer({ min: 0, max: 3000 }),
      phases: fc.array(phase, { minLength: nodes.length, maxLength: nodes.length }),
    });
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 25 }), fc.constantFrom(true, false), (steps, untilResumed) => {
        let prev: RolloutStatus | undefined;
        let now = 1_000_000;
        const written: RolloutEvent[] = [];
        for (const st of steps) {
          now += st.advanceMs;
          const spec: RolloutSpec = { failureThreshold: { count: 2 }, pauseSeconds: 1, progressDeadlineSeconds: 2, paused: st.paused, abort: st.abort, resumeBatch: st.resumeBatch, pauseUntilResumed: untilResumed };
          const reports = new Map<string, StatusContent>();
          nodes.forEach((n, i) => {
            const p = st.phases[i];
            if (p === 'none') return;
            const r = { node: n, namespace: 'default', name: 'm', observedGeneration: 1, targetVersion: st.version, time: new Date(now).toISOString() };
            if (p === 'serving') reports.set(n, { ...r, phase: 'Serving', servingVersion: st.version });
            if (p === 'servingOld') reports.set(n, { ...r, phase: 'Serving', servingVersion: '1' });
            if (p === 'failed') reports.set(n, { ...r, phase: 'Failed', servingVersion: '1' });
            if (p === 'deferred') reports.set(n, { ...r, phase: 'Deferred', servingVersion: '1' });
          });
          const next = stepRollout({ spec, revision: `rev-${st.version}`, toVersion: st.version, batches, reports, prev, fallbackFrom: '1', now });
          written.push(...rolloutEvents(prev, next));
          expect(rolloutEvents(next, structuredClone(next))).toEqual([]);
          prev = next;
        }
        for (let i = 1; i < written.length; i++) expect(`${written[i].reason} ${written[i].key}`).not.toBe(`${written[i - 1].reason} ${written[i - 1].key}`);
      }),
      { seed: 1213, numRuns: 300 },
    );
  });
});
