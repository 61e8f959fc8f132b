import { describe, expect, it } from 'vitest';
import { aggregateStatus, MAX_ATTENTION, MAX_ENTRY_MESSAGE, MAX_VERSIONS, nodeDetails, servingSummary } from '../../controller/status/aggregate.js';
import { InferenceModelSpecSchema, type StatusContent } from '../../shared/index.js';
import { EARLIER_EXCEPT_MAX, EARLIER_MAX } from '../../controller/rollout/types.js';
import { model } from './harness.js';

// Status that scales (issue 12): counts in the resource, only the nodes that need a person listed.

const spec3 = InferenceModelSpecSchema.parse(model('m', { manifest: [1, 2, 3].map((v) => ({ version: String(v), downloadURL: `http://127.0.0.1:1/m/${v}.tgz` })), targetVersion: '3' }).spec);
const report = (node: string, s: Partial<StatusContent>): StatusContent => ({ node, namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Serving', time: '2026-01-01T00:00:00Z', ...s });
const cond = (s: ReturnType<typeof aggregateStatus>, type: string) => s.conditions.find((c) => c.type === type)!;

describe('status aggregation at scale', () => {
  it('after a broken v3 the row says the node still serves 2', () => {
    const reports = new Map([['edge-01', report('edge-01', { phase: 'Failed', targetVersion: '3', servingVersion: '2', reason: 'VerifyFailed', message: 'sha256 mismatch' })]]);
    const s = aggregateStatus({ generation: 2, spec: spec3, targets: ['edge-01'], reports, now: 't' });
    expect(s).toMatchObject({ servingVersion: '2', serving: '2', ready: '0/1', phase: 'Degraded', versions: [{ version: '2', nodes: 1 }], phases: { Failed: 1 } });
    expect(s.nodes).toEqual([expect.objectContaining({ node: 'edge-01', phase: 'Failed', reason: 'VerifyFailed', servingVersion: '2' })]);
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'NodeFailed' });
  });

  it('a rollback held on the node is not "Progressing=True Rolling: waiting" forever', () => {
    const reports = new Map([['edge-01', report('edge-01', { phase: 'Serving', targetVersion: '3', servingVersion: '2', heldVersion: '2' })]]);
    const s = aggregateStatus({ generation: 2, spec: spec3, targets: ['edge-01'], reports, now: 't' });
    expect(cond(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'HeldOnNode' });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'HeldOnNode' });
    expect(s.phase).toBe('Held');
    expect(s.nodes).toEqual([expect.objectContaining({ node: 'edge-01', reason: 'RollbackHeld', heldVersion: '2' })]);
  });

  it('sums up mixed versions as "2 (3 nodes), 1 (1)"', () => {
    expect(servingSummary([{ version: '2', nodes: 3 }, { version: '1', nodes: 1 }])).toBe('2 (3 nodes), 1 (1)');
    expect(servingSummary([{ version: '2', nodes: 1 }, { version: '1', nodes: 1 }])).toBe('2 (1 node), 1 (1)');
    const reports = new Map(['a', 'b', 'c'].map((n) => [n, report(n, { servingVersion: '2' })]));
    reports.set('d', report('d', { servingVersion: '1', phase: 'Downloading' }));
    const s = aggregateStatus({ generation: 1, spec: spec3, targets: ['a', 'b', 'c', 'd'], reports, now: 't' });
    expect(s.serving).toBe('2 (3 nodes), 1 (1)');
    expect(s.servingVersion).toBeUndefined();
    expect(s.phases).toEqual({ Serving: 3, Downloading: 1 });
    // A node downloading needs nobody's eyes: not listed.
    expect(s.nodes).toEqual([]);
  });

  it('lists failed, unreachable, offline, deferred and silent nodes, most urgent first; not the ones on their way', () => {
    const reports = new Map([
      ['ok', report('ok', { servingVersion: '3' })],
      ['dl', report('dl', { phase: 'Downloading' })],
      ['def', report('def', { phase: 'Deferred', servingVersion: '2', deferredUntil: '2026-01-02T00:00:00Z' })],
      ['bad', report('bad', { phase: 'Failed', reason: 'DownloadFailed' })],
      ['gone', report('gone', { servingVersion: '3' })],
    ]);
    const s = aggregateStatus({ generation: 1, spec: spec3, targets: ['ok', 'dl', 'def', 'bad', 'gone', 'new', 'off'], reports, now: 't', unreachable: new Map([['gone', 'no session']]), offline: new Map([['off', 'presence offline']]) });
    expect(s.nodes.map((n) => [n.node, n.reason])).toEqual([
      ['bad', 'DownloadFailed'],
      ['gone', 'NodeUnreachable'],
      ['off', 'NodeOffline'],
      ['def', undefined],
      ['new', 'NoReport'],
    ]);
    expect(s.nodes.find((n) => n.node === 'def')).toMatchObject({ phase: 'Deferred', deferredUntil: '2026-01-02T00:00:00Z' });
    expect(s.phase).toBe('Progressing');
  });

  it('a rollout sets the phase: Rolling b/n, Paused, Aborted', () => {
    const reports = new Map([['a', report('a', { servingVersion: '3' })]]);
    const at = (rollout: Omit<NonNullable<Parameters<typeof aggregateStatus>[0]["rollout"]>, "revision">) => aggregateStatus({ generation: 1, spec: spec3, targets: ["a", "b"], reports, now: "t", rollout: { revision: "r1", ...rollout } });
    expect(at({ state: 'Progressing', batch: 2, batches: 5 }).phase).toBe('Rolling 2/5');
    const paused = at({ state: 'Paused', batch: 2, batches: 5, reason: 'PausedByUser', message: 'spec.rollout.paused' });
    expect(paused.phase).toBe('Paused');
    expect(cond(paused, 'Progressing')).toMatchObject({ status: 'Unknown', reason: 'PausedByUser' });
    const aborted = at({ state: 'Aborted', batch: 2, batches: 5, reason: 'FailureThreshold', message: '2 of 4 failed' });
    expect(aborted.phase).toBe('Aborted');
    expect(cond(aborted, 'Degraded')).toMatchObject({ status: 'True', reason: 'FailureThreshold' });
    expect(at({ state: 'Complete', batch: 5, batches: 5 }).phase).toBe('Progressing');
  });

  it('stays bounded with 10,000 nodes reporting: the serialized status is under a bound set by the cap, not the fleet', () => {
    // The worst case the cap allows: every node failed, with the longest fields the wire permits.
    const long = (n: number) => 'x'.repeat(n);
    const targets = Array.from({ length: 10_000 }, (_, i) => `edge-${String(i).padStart(5, '0')}-${long(200)}`);
    const reports = new Map(targets.map((n, i) => [n, report(n, { phase: i % 2 ? 'Failed' : 'Serving', servingVersion: `v${i % 40}-${long(50)}`, targetVersion: long(63), url: `http://${long(2000)}`, reason: long(128), message: long(4096) })]));
    // status.rollout at its widest: every earlier rollout kept, each with every exception it may list.
    const earlier = Array.from({ length: EARLIER_MAX }, (_, k) => ({ version: long(63), nodes: 10_000, except: targets.slice(k * EARLIER_EXCEPT_MAX, (k + 1) * EARLIER_EXCEPT_MAX).map((n) => n.slice(0, 253)) }));
    const rollout = { revision: long(16), state: 'Aborted' as const, batch: 10, batches: 10, fromVersion: long(63), toVersion: long(63), reason: long(64), message: long(512), earlier };
    const s = aggregateStatus({ generation: 1, spec: spec3, targets, reports, now: new Date().toISOString(), rollout });
    expect(s.phases).toEqual({ Serving: 5000, Failed: 5000 });
    expect(s.nodes).toHaveLength(MAX_ATTENTION);
    expect(s.nodesNotListed).toBe(5000 - MAX_ATTENTION);
    expect(s.versions).toHaveLength(MAX_VERSIONS);
    expect(s.versions.reduce((n, v) => n + v.nodes, 0)).toBe(10_000);
    // Per entry: node name 253, versions 3x63, url 2048, reason 128, message MAX_ENTRY_MESSAGE, keys and dates ~300.
    const entryMax = 253 + 3 * 63 + 2048 + 128 + MAX_ENTRY_MESSAGE * 3 + 300;
    // Per version count 63 + 40; conditions name at most 5 nodes with their reasons.
    // status.rollout: its scalars, and per earlier rollout a version and EARLIER_EXCEPT_MAX node names.
    const rolloutMax = 2048 + EARLIER_MAX * (63 + 40 + EARLIER_EXCEPT_MAX * (253 + 3));
    const bound = MAX_ATTENTION * entryMax + MAX_VERSIONS * 110 + 3 * (5 * (253 + 128) + 400) + 2048 + rolloutMax;
    const size = Buffer.byteLength(JSON.stringify(s));
    expect(size).toBeLessThan(bound);
    expect(bound).toBeLessThan(1.5 * 1024 * 1024 * 0.1); // a tenth of etcd's default object limit
    // The full detail is still there, off the resource.
    const all = nodeDetails({ targets, reports, now: 't', spec: spec3 });
    expect(all).toHaveLength(10_000);
    expect(all[1].message).toHaveLength(4096);
  });
});
