import { describe, expect, it } from 'vitest';
import { computeDesired } from '../../controller/desired.js';
import { planSends, recordSent, type Sent } from '../../controller/plan.js';
import { aggregateStatus } from '../../controller/status/aggregate.js';
import { StatusIntake } from '../../controller/status/intake.js';
import { isTarget } from '../../controller/placement.js';
import { InferenceModelSpecSchema, type StatusContent } from '../../shared/index.js';
import { model, node } from './harness.js';

// The pure parts, with plain data.

const opts = { edgeLabel: 'node-role.kubernetes.io/edge', requireDigest: false };
const withMeta = (o: any, generation = 1, uid = `uid-${o.metadata.name}`) => ({ ...o, metadata: { ...o.metadata, uid, generation, resourceVersion: String(generation) } });

describe('placement', () => {
  it('matches labels and layer; cloud nodes are the ones without the edge label', () => {
    const spec = { deployToLayer: 'edge' as const, nodeSelector: { a: '1' } };
    expect(isTarget(node('e', { a: '1' }), spec, opts.edgeLabel)).toBe(true);
    expect(isTarget(node('e', { a: '2' }), spec, opts.edgeLabel)).toBe(false);
    expect(isTarget(node('c', { a: '1' }, false), spec, opts.edgeLabel)).toBe(false);
    expect(isTarget(node('c', { a: '1' }, false), { ...spec, deployToLayer: 'cloud' }, opts.edgeLabel)).toBe(true);
    expect(isTarget(node('x', {}), { deployToLayer: 'edge' }, 'custom/edge')).toBe(false);
  });
});

describe('planning sends', () => {
  const nodes = [node('n1', { z: 'a' }), node('n2', { z: 'b' })];

  it('updates new and changed resources, deletes ones that no longer target a node, and is quiet when nothing changed', () => {
    const sent: Sent = new Map();
    let desired = computeDesired([withMeta(model('m', { nodeSelector: { z: 'a' } }))], nodes, opts);
    let sends = planSends(desired, sent, []);
    expect(sends.map((s) => `${s.op} ${s.node}`)).toEqual(['update n1']);
    sends.forEach((s) => recordSent(sent, s));
    expect(planSends(desired, sent, [])).toEqual([]);

    desired = computeDesired([withMeta(model('m', { nodeSelector: { z: 'b' } }), 2)], nodes, opts);
    sends = planSends(desired, sent, []);
    expect(sends.map((s) => `${s.op} ${s.node}`).sort()).toEqual(['delete n1', 'update n2']);
  });

  it('a sync carries the node whole set; a held-back (invalid) resource is neither deleted nor re-sent', () => {
    const sent: Sent = new Map();
    const good = withMeta(model('m', { nodeSelector: { z: 'a' } }));
    planSends(computeDesired([good], nodes, opts), sent, []).forEach((s) => recordSent(sent, s));
    const broken = withMeta(model('m', { nodeSelector: { z: 'a' }, targetVersion: '9' }), 2);
    const desired = computeDesired([broken], nodes, opts);
    expect(desired.verdicts.get('default/m')?.kind).toBe('invalid');
    expect(planSends(desired, sent, [])).toEqual([]);
    const [sync] = planSends(desired, sent, ['n1']);
    expect(sync.op === 'sync' && [...sync.items.keys()]).toEqual(['default/m']);
  });

  it('image resources and deleting resources go to no node', () => {
    const d = computeDesired([withMeta(model('img', { image: 'x:1' })), { ...withMeta(model('gone')), metadata: { ...withMeta(model('gone')).metadata, deletionTimestamp: 'now' } }], nodes, opts);
    expect(d.perNode.size).toBe(0);
    expect(d.verdicts.get('default/img')?.kind).toBe('image');
  });
});

describe('status aggregation', () => {
  const spec = InferenceModelSpecSchema.parse(model('m').spec);
  const report = (node: string, s: Partial<StatusContent>): StatusContent => ({ node, namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Serving', time: '2026-01-01T00:00:00Z', ...s });

  it('is Ready only when every target serves the target version; keeps lastTransitionTime while a condition holds', () => {
    const reports = new Map([
      ['a', report('a', { servingVersion: '1' })],
      ['b', report('b', { phase: 'Downloading' })],
    ]);
    const s1 = aggregateStatus({ generation: 1, spec, targets: ['a', 'b'], reports, now: 't1' });
    expect(s1).toMatchObject({ readyNodes: 1, targetNodes: 2, ready: '1/2' });
    expect(s1.servingVersion).toBeUndefined();
    expect(s1.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', lastTransitionTime: 't1' });
    reports.set('b', report('b', { servingVersion: '1' }));
    const s2 = aggregateStatus({ generation: 1, spec, targets: ['a', 'b'], reports, now: 't2', previous: s1.conditions });
    expect(s2.servingVersion).toBe('1');
    expect(s2.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', lastTransitionTime: 't2' });
    expect(s2.conditions.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'False', lastTransitionTime: 't1' });
  });

  it('lists a node that is still removing the model until it reports Deleted', () => {
    const reports = new Map([['old', report('old', { phase: 'Deleting' })]]);
    expect(aggregateStatus({ generation: 1, spec, targets: [], reports, now: 't' }).nodes.map((n) => n.node)).toEqual(['old']);
    reports.set('old', report('old', { phase: 'Deleted' }));
    expect(aggregateStatus({ generation: 1, spec, targets: [], reports, now: 't' }).nodes).toEqual([]);
  });
});

describe('status intake', () => {
  const r = (gen: number, uid = 'u1'): StatusContent => ({ node: 'n', namespace: 'default', name: 'm', uid, observedGeneration: gen, phase: 'Serving', time: 't' });
  it('drops duplicates, older generations, and reports about another incarnation of the name', () => {
    const i = new StatusIntake(4);
    expect(i.accept('a', r(2), 'u1')).toBe('accepted');
    expect(i.accept('a', r(2), 'u1')).toBe('duplicate');
    expect(i.accept('b', r(1), 'u1')).toBe('stale');
    expect(i.accept('c', r(3, 'u0'), 'u1')).toBe('stale');
    expect(i.accept('d', r(3), 'u1')).toBe('accepted');
    // A removal report carries no generation of its own, and is taken.
    expect(i.accept('x', { ...r(0), uid: undefined, phase: 'Deleted' }, 'u1')).toBe('accepted');
    // The id memory is bounded: the oldest ids are forgotten first.
    i.accept('e', r(3), 'u1');
    expect(i.accept('a', r(3), 'u1')).toBe('accepted');
  });
});
