import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyRollouts } from '../../controller/rollout/apply.js';
import { rolloutBatches } from '../../controller/rollout/membership.js';
import { rolloutRevision } from '../../controller/rollout/revision.js';
import { nextDue, stepRollout, versionFor } from '../../controller/rollout/step.js';
import type { RolloutStatus } from '../../controller/rollout/types.js';
import { computeDesired } from '../../controller/desired.js';
import type { RolloutSpec, StatusContent } from '../../shared/index.js';
import { model, node } from './harness.js';

// The rollout planner is pure: batch membership, the state machine and the version each node is
// sent, checked as properties over generated fleets and rollouts (seeded).

const PROPERTY = { seed: 1212, numRuns: 300 };
const amount = fc.oneof(fc.record({ count: fc.integer({ min: 0, max: 40 }) }), fc.record({ percent: fc.integer({ min: 0, max: 100 }) }));
const rolloutArb: fc.Arbitrary<RolloutSpec> = fc.record(
  {
    canary: fc.oneof(amount, fc.record({ selector: fc.constant({ canary: 'yes' }) })),
    batch: amount,
    maxUnavailable: fc.integer({ min: 1, max: 30 }),
    failureThreshold: amount,
    pauseSeconds: fc.integer({ min: 0, max: 5 }),
  },
  { requiredKeys: [] },
);
const namesArb = fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), { maxLength: 80 });
const labelsOf = (n: string): Record<string, string> => (n.length % 3 === 0 ? { canary: 'yes' } : {});

function report(n: string, phase: StatusContent['phase'], servingVersion?: string, targetVersion = '2'): StatusContent {
  return { node: n, namespace: 'default', name: 'm', observedGeneration: 2, phase, servingVersion, targetVersion, time: new Date(0).toISOString() };
}

describe('rollout membership', () => {
  it('covers every target node exactly once, and is a function of uid, rollout and names only (not their order)', () => {
    fc.assert(
      fc.property(fc.uuid(), namesArb, rolloutArb, (uid, names, rollout) => {
        const batches = rolloutBatches(uid, names, rollout, labelsOf);
        const flat = batches.flat();
        expect(flat.length).toBe(names.length);
        expect(new Set(flat)).toEqual(new Set(names));
        expect(batches.every((b) => b.length > 0)).toBe(true);
        expect(rolloutBatches(uid, [...names].reverse(), rollout, labelsOf)).toEqual(batches);
        // maxUnavailable caps the nodes updating at once within a batch (window.ts), not its size.
        expect(rolloutBatches(uid, names, { ...rollout, maxUnavailable: undefined }, labelsOf)).toEqual(batches);
      }),
      PROPERTY,
    );
  });

  it('10% batches of 1,000 nodes are ten batches of 100, and a different uid shuffles them', () => {
    const names = Array.from({ length: 1000 }, (_, i) => `node-${i}`);
    const a = rolloutBatches('uid-a', names, { batch: { percent: 10 } });
    expect(a.map((b) => b.length)).toEqual(Array(10).fill(100));
    expect(rolloutBatches('uid-b', names, { batch: { percent: 10 } })[0]).not.toEqual(a[0]);
  });
});

describe('rollout state machine', () => {
  const phases = fc.constantFrom<StatusContent['phase']>('Serving', 'Failed', 'Deferred', 'Downloading', 'Pending');
  it('never advances or revives an aborted rollout, whatever the reports and time', () => {
    fc.assert(
      fc.property(fc.uuid(), namesArb, rolloutArb, fc.array(phases, { maxLength: 80 }), fc.integer({ min: 0, max: 1e6 }), (uid, names, rollout, ph, dt) => {
        const batches = rolloutBatches(uid, names, rollout, labelsOf);
        const prev: RolloutStatus = { revision: 'r', state: 'Aborted', batch: 1, batches: batches.length, fromVersion: '1', toVersion: '2', reason: 'FailureThresholdExceeded', message: 'x' };
        const reports = new Map(names.map((n, i) => [n, report(n, ph[i] ?? 'Serving', '2')]));
        const s = stepRollout({ spec: { ...rollout, resumeBatch: 99 }, revision: 'r', toVersion: '2', batches, reports, prev, now: dt });
        expect(s.state).toBe('Aborted');
        expect(s.batch).toBe(1);
        expect(s.reason).toBe('FailureThresholdExceeded');
      }),
      PROPERTY,
    );
  });

  it('clearing spec.rollout.abort starts a rollout aborted by hand again from batch 1; an abort by threshold stays final', () => {
    const batches = [['a'], ['b'], ['c']];
    const reports = new Map([['a', report('a', 'Serving', '1')]]);
    const base = { revision: 'r', toVersion: '2', batches, reports, now: 0 };
    const started = stepRollout({ ...base, spec: { abort: true }, fallbackFrom: '1' });
    expect(started).toMatchObject({ state: 'Aborted', reason: 'AbortedByUser', batch: 1, fromVersion: '1' });
    expect(started.message).toContain('abort to false');
    const retried = stepRollout({ ...base, spec: {}, prev: started, now: 5000 });
    expect(retried).toMatchObject({ state: 'Progressing', batch: 1, fromVersion: '1', toVersion: '2', batchStartTime: new Date(5000).toISOString() });
    const byThreshold: RolloutStatus = { ...started, reason: 'FailureThresholdExceeded' };
    expect(stepRollout({ ...base, spec: {}, prev: byThreshold })).toMatchObject({ state: 'Aborted', reason: 'FailureThresholdExceeded' });
  });

  it('walks every batch to Complete when every reached node serves, with batch numbers only going up', () => {
    fc.assert(
      fc.property(fc.uuid(), namesArb, rolloutArb, (uid, names, rollout) => {
        const spec = { ...rollout, pauseSeconds: 0 };
        const batches = rolloutBatches(uid, names, spec, labelsOf);
        const reports = new Map<string, StatusContent>();
        let s = stepRollout({ spec, revision: 'r', toVersion: '2', batches, reports, fallbackFrom: '1', now: 0 });
        for (let round = 0; round < batches.length + 2 && s.state !== 'Complete'; round++) {
          const before = s.batch;
          batches.forEach((b, i) => i < s.batch && b.forEach((n) => reports.set(n, report(n, 'Serving', '2'))));
          s = stepRollout({ spec, revision: 'r', toVersion: '2', batches, reports, prev: s, now: round });
          expect(s.batch).toBeGreaterThanOrEqual(before);
        }
        expect(s.state).toBe('Complete');
        expect(s.fromVersion).toBe('1');
      }),
      PROPERTY,
    );
  });

  it('aborts at the failure threshold; failed nodes go back to what they served, unreached ones keep theirs', () => {
    const names = Array.from({ length: 20 }, (_, i) => `n${i}`);
    const spec: RolloutSpec = { canary: { count: 4 }, batch: { count: 8 }, failureThreshold: { percent: 50 } };
    const batches = rolloutBatches('u', names, spec);
    const [c0, c1, c2, c3] = batches[0];
    const reports = new Map([[c0, report(c0, 'Failed', '1')], [c1, report(c1, 'Serving', '2')]]);
    let s = stepRollout({ spec, revision: 'r', toVersion: '2', batches, reports, fallbackFrom: '1', now: 0 });
    expect(s).toMatchObject({ state: 'Progressing', batch: 1, batchFailed: 1 });
    reports.set(c2, report(c2, 'Failed'));
    s = stepRollout({ spec, revision: 'r', toVersion: '2', batches, reports, prev: s, now: 1 });
    expect(s).toMatchObject({ state: 'Aborted', reason: 'FailureThresholdExceeded', batch: 1, batchFailed: 2 });
    const versions = new Set(['1', '2']);
    expect(versionFor(s, 0, reports.get(c0), versions)).toBe('1');
    expect(versionFor(s, 0, reports.get(c1), versions)).toBe('2');
    expect(versionFor(s, 0, reports.get(c2), versions)).toBe('1');
    expect(versionFor(s, 0, undefined, versions)).toBe('2'); // c3: no report yet, not disturbed
    expect(versionFor(s, 1, undefined, versions)).toBe('1');
    void c3;
  });

  it('pauses on deferred nodes, on spec.rollout.paused and until resumeBatch; a new revision starts over from the completed version', () => {
    const names = Array.from({ length: 6 }, (_, i) => `n${i}`);
    const spec: RolloutSpec = { canary: { count: 2 }, batch: { count: 2 }, pauseUntilResumed: true };
    const batches = rolloutBatches('u', names, spec);
    const reports = new Map<string, StatusContent>();
    const step = (sp: RolloutSpec, prev?: RolloutStatus, revision = 'r') => stepRollout({ spec: sp, revision, toVersion: '2', batches, reports, prev, fallbackFrom: '1', now: 5 });
    let s = step(spec);
    reports.set(batches[0][0], report(batches[0][0], 'Serving', '2'));
    reports.set(batches[0][1], report(batches[0][1], 'Deferred', '1'));
    s = step(spec, s);
    expect(s).toMatchObject({ state: 'Paused', reason: 'NodesDeferred', batch: 1 });
    reports.set(batches[0][1], report(batches[0][1], 'Serving', '2'));
    s = step(spec, s);
    expect(s).toMatchObject({ state: 'Paused', reason: 'AwaitingResume', batch: 1 });
    expect(step({ ...spec, resumeBatch: 2, paused: true }, s)).toMatchObject({ state: 'Paused', reason: 'PausedByUser', batch: 1 });
    s = step({ ...spec, resumeBatch: 2 }, s);
    expect(s).toMatchObject({ state: 'Progressing', batch: 2 });
    const next = step(spec, { ...s, state: 'Complete' }, 'r2');
    expect(next).toMatchObject({ batch: 1, fromVersion: '2', revision: 'r2' });
  });

  it('aborts a batch past its progress deadline, but not one waiting only on deferred nodes; a timed pause ends on time', () => {
    const names = ['a', 'b', 'c', 'd'];
    const spec: RolloutSpec = { batch: { count: 2 }, progressDeadlineSeconds: 10, pauseSeconds: 30 };
    const batches = rolloutBatches('u', names, spec);
    const reports = new Map<string, StatusContent>();
    const step = (prev: RolloutStatus | undefined, now: number) => stepRollout({ spec, revision: 'r', toVersion: '2', batches, reports, prev, fallbackFrom: '1', now });
    let s = step(undefined, 0);
    expect(nextDue(s, spec)).toBe(10_001);
    reports.set(batches[0][0], report(batches[0][0], 'Deferred', '1'));
    reports.set(batches[0][1], report(batches[0][1], 'Serving', '2'));
    expect(step(s, 20_000)).toMatchObject({ state: 'Paused', reason: 'NodesDeferred' });
    reports.set(batches[0][0], report(batches[0][0], 'Downloading', '1'));
    expect(step(s, 20_000)).toMatchObject({ state: 'Aborted', reason: 'ProgressDeadlineExceeded', batch: 1 });
    reports.set(batches[0][0], report(batches[0][0], 'Serving', '2'));
    s = step(s, 5_000);
    expect(s).toMatchObject({ state: 'Paused', reason: 'BatchPause', batch: 1 });
    expect(nextDue(s, spec)).toBe(35_000);
    expect(step(s, 34_999)).toMatchObject({ state: 'Paused', batch: 1 });
    expect(step(s, 35_000)).toMatchObject({ state: 'Progressing', batch: 2 });
  });

  it('only manifest, targetVersion and image change the revision', () => {
    const base = { modelName: 'm', deployToLayer: 'edge' as const, manifest: [{ version: '1', downloadURL: 'http://x/1' }], targetVersion: '1' };
    const r = rolloutRevision(base);
    expect(rolloutRevision({ ...base, rollout: { paused: true } } as typeof base)).toBe(r);
    expect(rolloutRevision({ ...base, targetVersion: '2' })).not.toBe(r);
    expect(rolloutRevision({ ...base, image: 'x:1' })).not.toBe(r);
    expect(rolloutRevision({ ...base, manifest: [{ version: '1', downloadURL: 'http://y/1' }] })).not.toBe(r);
  });
});

describe('applyRollouts', () => {
  it('leaves a resource without spec.rollout exactly as computeDesired planned it', () => {
    const nodes = ['a', 'b', 'c'].map((n) => node(n));
    const m = { ...model('plain'), metadata: { ...model('plain').metadata, uid: 'u1', generation: 1 } };
    const planned = computeDesired([m], nodes, { edgeLabel: 'node-role.kubernetes.io/edge', requireDigest: false });
    const desired = computeDesired([m], nodes, { edgeLabel: 'node-role.kubernetes.io/edge', requireDigest: false });
    const plan = applyRollouts(desired, { models: [m], labelsOf: () => ({}), reports: () => new Map(), remembered: () => undefined, lastSent: () => undefined, now: 0 });
    expect(plan.states.size).toBe(0);
    expect(desired).toEqual(planned);
  });

  it('sends the canary the new version, the rest the version they serve, without the rollout block', () => {
    const names = Array.from({ length: 10 }, (_, i) => `n${i}`);
    const nodes = names.map((n) => node(n));
    const m = { ...model('r', { targetVersion: '2', rollout: { canary: { count: 2 } } }), metadata: { name: 'r', namespace: 'default', uid: 'u2', generation: 3 }, status: { servingVersion: '1' } };
    const desired = computeDesired([m], nodes, { edgeLabel: 'node-role.kubernetes.io/edge', requireDigest: false });
    const plan = applyRollouts(desired, { models: [m], labelsOf: () => ({}), reports: () => new Map(), remembered: () => undefined, lastSent: () => undefined, now: 0 });
    expect(plan.states.get('default/r')).toMatchObject({ state: 'Progressing', batch: 1, batches: 2, fromVersion: '1', toVersion: '2' });
    const canary = rolloutBatches('u2', names, { canary: { count: 2 } })[0];
    for (const n of names) {
      const c = desired.perNode.get(n)!.get('default/r')!;
      expect(c.spec.targetVersion).toBe(canary.includes(n) ? '2' : '1');
      expect('rollout' in c.spec).toBe(false);
      expect(c.metadata.generation).toBe(3);
    }
  });
});
