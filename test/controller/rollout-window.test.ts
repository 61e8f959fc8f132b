import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { computeDesired } from '../../controller/desired.js';
import { applyRollouts } from '../../controller/rollout/apply.js';
import { rolloutBatches } from '../../controller/rollout/membership.js';
import type { RolloutStatus } from '../../controller/rollout/types.js';
import { batchWindow } from '../../controller/rollout/window.js';
import type { ModelContent, RolloutSpec, StatusContent } from '../../shared/index.js';
import { model, node } from './harness.js';

// spec.rollout.maxUnavailable caps the nodes of the batch in progress that hold the new version
// without serving it yet (in flight), not the batch size. Checked by simulating a fleet step by
// step: after every plan, nodes report (pending, then Serving, Failed or Deferred) in an order
// fast-check picks (seeded, so a failure replays).

const PROPERTY = { seed: 1213, numRuns: 200 };
const KEY = 'default/m';
const OPTS = { edgeLabel: 'node-role.kubernetes.io/edge', requireDigest: false };

type Behaviour = 'ok' | 'fail' | 'defer';

function report(n: string, phase: StatusContent['phase'], targetVersion: string, servingVersion?: string): StatusContent {
  return { node: n, namespace: 'default', name: 'm', observedGeneration: 2, phase, targetVersion, servingVersion, time: new Date(0).toISOString() };
}

/** A node's next report, given the version it holds and its last report (undefined: nothing to say). */
function nextReport(n: string, held: string | undefined, r: StatusContent, behaviour: Behaviour): StatusContent | undefined {
  if (held === undefined) return undefined;
  if (r.targetVersion !== held) return report(n, 'Downloading', held, r.servingVersion);
  if (r.phase === 'Downloading') {
    if (held === '2' && behaviour === 'fail') return report(n, 'Failed', held, r.servingVersion);
    if (held === '2' && behaviour === 'defer') return report(n, 'Deferred', held, r.servingVersion);
    return report(n, 'Serving', held, held);
  }
  if (r.phase === 'Deferred') return report(n, 'Serving', held, held);
  return undefined;
}

/** Nodes holding version 2 that neither serve it, nor failed on it, nor hold its switch (Deferred). */
function inFlight(held: Map<string, string | undefined>, reports: Map<string, StatusContent>): string[] {
  return [...held].filter(([n, v]) => {
    if (v !== '2') return false;
    const r = reports.get(n)!;
    return !((r.phase === 'Serving' && r.servingVersion === '2') || (r.targetVersion === '2' && (r.phase === 'Failed' || r.phase === 'Deferred')));
  }).map(([n]) => n);
}

const amount = fc.oneof(fc.record({ count: fc.integer({ min: 1, max: 12 }) }), fc.record({ percent: fc.integer({ min: 1, max: 100 }) }));
const rolloutArb: fc.Arbitrary<RolloutSpec> = fc.record(
  {
    canary: fc.record({ count: fc.integer({ min: 1, max: 6 }) }),
    batch: amount,
    maxUnavailable: fc.integer({ min: 1, max: 5 }),
    failureThreshold: amount,
  },
  { requiredKeys: ['maxUnavailable'] },
);
const fleetArb = fc.array(fc.constantFrom<Behaviour>('ok', 'ok', 'ok', 'fail', 'defer'), { minLength: 1, maxLength: 30 });

describe('rollout window (maxUnavailable)', () => {
  it('never has more than maxUnavailable nodes in flight, batches ignore it, a restart plans the same, and every node is reached when nodes succeed', () => {
    fc.assert(
      fc.property(rolloutArb, fleetArb, fc.array(fc.nat(), { minLength: 1, maxLength: 64 }), (rollout, behaviours, choices) => {
        const names = behaviours.map((_, i) => `n${i}`);
        const behaviour = new Map(names.map((n, i) => [n, behaviours[i]]));
        const nodes = names.map((n) => node(n));
        const base = model('m', { targetVersion: '2', rollout });
        const m = { ...base, metadata: { ...base.metadata, uid: 'u', generation: 2 }, status: { servingVersion: '1' } as Record<string, unknown> };
        const reports = new Map(names.map((n) => [n, report(n, 'Serving', '1', '1')]));
        const sent = new Map<string, ModelContent>();
        const held = new Map<string, string | undefined>();
        let state: RolloutStatus | undefined;
        const plan = (o: { remembered?: RolloutStatus; status?: RolloutStatus; reports: Map<string, StatusContent>; lastSent: boolean }) => {
          const desired = computeDesired([m], nodes, OPTS);
          const p = applyRollouts(desired, {
            models: [{ ...m, status: { ...m.status, rollout: o.status } }],
            labelsOf: () => ({}),
            reports: () => o.reports,
            remembered: () => o.remembered,
            lastSent: (n) => (o.lastSent ? sent.get(n) : undefined),
            now: 0,
          });
          const versions = new Map(names.map((n) => [n, desired.perNode.get(n)?.get(KEY)?.spec.targetVersion]));
          return { state: p.states.get(KEY)!, versions };
        };
        const expectedBatches = rolloutBatches('u', names, { ...rollout, maxUnavailable: undefined }).length;
        for (let step = 0; step < 4000; step++) {
          const prev = state;
          const now = plan({ remembered: prev, reports, lastSent: true });
          // A restarted controller (or a new leader) reads the same status back: the same plan.
          if (prev) {
            const restarted = plan({ status: prev, reports, lastSent: false });
            expect(restarted).toEqual(now);
            // One that has heard no report yet keeps every node the last plan reached on 2 and stays under the cap.
            if (prev.state !== 'Aborted') {
              const blind = plan({ status: prev, reports: new Map(), lastSent: false });
              for (const [n, v] of held) if (v === '2') expect(blind.versions.get(n)).toBe('2');
              expect(inFlight(blind.versions, reports).length).toBeLessThanOrEqual(rollout.maxUnavailable!);
            }
          }
          state = now.state;
          for (const [n, v] of now.versions) held.set(n, v);
          expect(state.batches).toBe(expectedBatches);
          const flying = inFlight(held, reports);
          expect(flying.length).toBeLessThanOrEqual(rollout.maxUnavailable!);
          if (state.state === 'Progressing' && state.reason === 'BatchProgressing') {
            expect(state.batchInFlight).toBe(flying.length);
            expect(state.message).toContain(`${flying.length} in flight (maxUnavailable ${rollout.maxUnavailable})`);
          }
          // Some node that has something to say says it.
          const talkers = names.filter((n) => nextReport(n, held.get(n), reports.get(n)!, behaviour.get(n)!));
          if (!talkers.length) break;
          const who = talkers[choices[step % choices.length] % talkers.length];
          reports.set(who, nextReport(who, held.get(who), reports.get(who)!, behaviour.get(who)!)!);
        }
        if (!behaviours.includes('fail')) {
          expect(state).toMatchObject({ state: 'Complete', batch: expectedBatches });
          for (const n of names) expect(reports.get(n)).toMatchObject({ phase: 'Serving', servingVersion: '2' });
        } else if (state!.state !== 'Aborted') {
          expect(state!.state).toBe('Complete');
          for (const n of names) expect(reports.get(n)!.phase === 'Failed' || reports.get(n)!.servingVersion === '2').toBe(true);
        }
      }),
      PROPERTY,
    );
  });
});

describe('batchWindow', () => {
  const order = ['a', 'b', 'c', 'd', 'e', 'f'];
  const on2 = (n: string, phase: StatusContent['phase']) => report(n, phase, '2', phase === 'Serving' ? '2' : '1');

  it('without maxUnavailable reaches the whole batch at once', () => {
    const w = batchWindow({ members: order, reports: new Map(), toVersion: '2', reachedBefore: 0, open: true });
    expect([...w.reached]).toEqual(order);
    expect(w).toMatchObject({ reachedPrefix: 6, inFlight: 6 });
  });

  it('gives the free slots in batch order; Serving, Failed and Deferred nodes hold none; the same inputs give the same window', () => {
    const reports = new Map([['a', on2('a', 'Serving')], ['b', on2('b', 'Failed')], ['c', on2('c', 'Deferred')], ['d', on2('d', 'Downloading')]]);
    const w = batchWindow({ members: order, reports, toVersion: '2', maxUnavailable: 2, reachedBefore: 4, open: true });
    expect([...w.reached].sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(w).toMatchObject({ reachedPrefix: 5, inFlight: 2 });
    // Planning again with what the first plan recorded gives the same window (a restart).
    expect(batchWindow({ members: order, reports, toVersion: '2', maxUnavailable: 2, reachedBefore: w.reachedPrefix, open: true })).toEqual(w);
  });

  it('counts a node sent the new version as in flight before it reports; after an abort, gives no new slot', () => {
    const w = batchWindow({ members: order, reports: new Map(), toVersion: '2', maxUnavailable: 3, reachedBefore: 2, open: true });
    expect([...w.reached]).toEqual(['a', 'b', 'c']);
    const closed = batchWindow({ members: order, reports: new Map(), toVersion: '2', maxUnavailable: 3, reachedBefore: 2, open: false });
    expect([...closed.reached]).toEqual(['a', 'b']);
  });
});
