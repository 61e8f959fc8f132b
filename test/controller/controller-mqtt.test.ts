import { describe, expect, it } from 'vitest';
import type { Broker } from '../helpers/mosquitto.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { SimNode } from '../fakes/sim-node.js';
import { DEFAULT_TOPIC_PREFIX, presenceTopic } from '../../shared/index.js';
import { SHA, TYPES, model, node, perTestApiAndBroker, startController, until } from './harness.js';
import { WAIT_MS } from '../helpers/wait.js';

// The controller against the fake API server and a real mosquitto, with simulated nodes.

let api: FakeKubeApi;
let broker: Broker;
const cleanups = perTestApiAndBroker((a, b) => ([api, broker] = [a, b]));

async function simNode(name: string) {
  const n = await new SimNode({ node: name, brokerUrl: broker.url }).start();
  cleanups.push(() => n.stop());
  return n;
}

async function controller(options = {}) {
  const c = await startController(api, { brokerUrl: broker.url, options });
  cleanups.push(() => c.controller.stop());
  return c;
}

const getModel = (name: string) => api.get(TYPES.inferencemodels, 'default', name);
const cond = (m: any, type: string) => m?.status?.conditions?.find((c: any) => c.type === type);

describe('controller over mqtt', () => {
  it('sends a resource only to the nodes its nodeSelector and layer select, and follows edits, relabels and deletion', async () => {
    api.create(TYPES.nodes, node('cam-1', { camera: 'yes' }));
    api.create(TYPES.nodes, node('gw-1', { camera: 'no' }));
    api.create(TYPES.nodes, node('cloud-1', { camera: 'yes' }, false));
    const cam = await simNode('cam-1');
    const gw = await simNode('gw-1');
    const cloud = await simNode('cloud-1');
    await controller();

    api.create(TYPES.inferencemodels, model('resnet', { nodeSelector: { camera: 'yes' } }));
    await cam.waitFor((n) => n.held.has('default/resnet'), WAIT_MS, 'resnet on cam-1');
    expect(cam.held.get('default/resnet')!.spec.targetVersion).toBe('1');

    api.patch(TYPES.inferencemodels, 'default', 'resnet', { spec: { targetVersion: '2' } });
    await cam.waitFor((n) => n.held.get('default/resnet')?.spec.targetVersion === '2', WAIT_MS, 'version 2');
    expect(cam.generationOf('default/resnet')).toBe(2);

    // Relabel: the model moves from cam-1 to gw-1.
    api.patch(TYPES.nodes, undefined, 'cam-1', { metadata: { labels: { camera: 'no' } } });
    api.patch(TYPES.nodes, undefined, 'gw-1', { metadata: { labels: { camera: 'yes' } } });
    await cam.waitFor((n) => !n.held.has('default/resnet'), WAIT_MS, 'removal from cam-1');
    await gw.waitFor((n) => n.held.has('default/resnet'), WAIT_MS, 'resnet on gw-1');

    api.remove(TYPES.inferencemodels, 'default', 'resnet');
    await gw.waitFor((n) => !n.held.has('default/resnet'), WAIT_MS, 'removal from gw-1');
    // The cloud node (no edge label) never got the edge model.
    expect(cloud.everHeld.has('default/resnet')).toBe(false);
    expect(cam.received.filter((m) => m.route.operation === 'delete')).toHaveLength(1);
  });

  it('answers hello with a full sync of exactly the node set, and the periodic sync removes strays', async () => {
    api.create(TYPES.nodes, node('n1', { zone: 'a' }));
    api.create(TYPES.inferencemodels, model('m1', { nodeSelector: { zone: 'a' } }));
    api.create(TYPES.inferencemodels, model('m2', { nodeSelector: { zone: 'b' } }));
    await controller({ syncIntervalMs: 300 });
    const n1 = await simNode('n1');
    await n1.waitFor((n) => n.received.some((m) => m.route.operation === 'sync' && (m.content as any).items.length === 1), WAIT_MS, 'a sync');
    expect([...n1.held.keys()]).toEqual(['default/m1']);
    // A stray the node should not have is removed by the next periodic sync.
    n1.held.set('default/stray', n1.held.get('default/m1')!);
    await n1.waitFor((n) => !n.held.has('default/stray'), WAIT_MS, 'stray removed by periodic sync');
    expect(n1.everHeld.has('default/m2')).toBe(false);
  });

  it('writes aggregated node status through the status subresource with Kubernetes conditions', async () => {
    api.create(TYPES.nodes, node('a1', { pool: 'x' }));
    api.create(TYPES.nodes, node('a2', { pool: 'x' }));
    const a1 = await simNode('a1');
    const a2 = await simNode('a2');
    await controller();
    api.create(TYPES.inferencemodels, model('det', { nodeSelector: { pool: 'x' } }));
    await a1.waitFor((n) => n.held.has('default/det'));
    await a2.waitFor((n) => n.held.has('default/det'));
    await until(() => getModel('det')?.status?.targetNodes === 2, 'targetNodes');
    expect(cond(getModel('det'), 'Ready').status).toBe('False');

    await a1.report({ namespace: 'default', name: 'det', observedGeneration: 1, phase: 'Serving', servingVersion: '1', targetVersion: '1', url: 'http://a1:8000/v2/models/det' });
    await a2.report({ namespace: 'default', name: 'det', observedGeneration: 1, phase: 'Downloading', targetVersion: '1' });
    // Both reports in the status (they may be written in two status writes on a loaded machine).
    await until(() => getModel('det')?.status?.readyNodes === 1 && getModel('det')?.status?.phases?.Downloading === 1, 'one ready node, one downloading');
    let m = getModel('det');
    expect(m.status.ready).toBe('1/2');
    expect(cond(m, 'Progressing')).toMatchObject({ status: 'True', reason: 'Rolling', observedGeneration: 1 });
    // Counts, not a list: a node on its way needs nobody's eyes.
    expect(m.status).toMatchObject({ phases: { Serving: 1, Downloading: 1 }, versions: [{ version: '1', nodes: 1 }], serving: '1', phase: 'Progressing', nodes: [] });

    await a2.report({ namespace: 'default', name: 'det', observedGeneration: 1, phase: 'Serving', servingVersion: '1', targetVersion: '1' });
    await until(() => cond(getModel('det'), 'Ready')?.status === 'True', 'Ready=True');
    m = getModel('det');
    expect(m.status).toMatchObject({ servingVersion: '1', readyNodes: 2, targetNodes: 2, observedGeneration: 1 });
    // A phase no node is in any more is gone from the counts (the merge patch clears it).
    expect(m.status.phases).toEqual({ Serving: 2 });
    for (const c of m.status.conditions) expect(Object.keys(c).sort()).toEqual(['lastTransitionTime', 'message', 'observedGeneration', 'reason', 'status', 'type']);
    // Status writes went to the status subresource as merge patches; spec untouched, generation unchanged.
    const writes = api.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith('/det/status'));
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.every((w) => w.contentType === 'application/merge-patch+json')).toBe(true);
    expect(m.metadata.generation).toBe(1);

    // A failure on one node: Degraded with the node's reason.
    await a2.report({ namespace: 'default', name: 'det', observedGeneration: 1, phase: 'Failed', reason: 'DigestMismatch', message: 'bad bytes' });
    await until(() => cond(getModel('det'), 'Degraded')?.status === 'True', 'Degraded=True');
    expect(cond(getModel('det'), 'Degraded').message).toContain('DigestMismatch');
    expect(getModel('det').status.nodes).toEqual([expect.objectContaining({ node: 'a2', phase: 'Failed', reason: 'DigestMismatch', message: 'bad bytes' })]);
  });

  it('lists a node whose retained presence says offline (its last report kept), until it is online again', async () => {
    api.create(TYPES.nodes, node('p1'));
    api.create(TYPES.nodes, node('p2'));
    const p1 = await simNode('p1');
    const p2 = await simNode('p2');
    await controller();
    api.create(TYPES.inferencemodels, model('pr'));
    await p1.waitFor((n) => n.held.has('default/pr'));
    await p2.waitFor((n) => n.held.has('default/pr'));
    for (const p of [p1, p2]) await p.report({ namespace: 'default', name: 'pr', observedGeneration: 1, phase: 'Serving', servingVersion: '1', targetVersion: '1' });
    await until(() => getModel('pr')?.status?.phase === 'Ready', 'both serving');
    expect(getModel('pr').status.nodes).toEqual([]);
    await p2.publishRaw(JSON.stringify({ state: 'offline', node: 'p2', time: '2026-01-01T00:00:00Z' }), presenceTopic(DEFAULT_TOPIC_PREFIX, 'p2'));
    const listed = await until(() => getModel('pr')?.status?.nodes?.find((n: any) => n.node === 'p2'), 'p2 listed offline');
    expect(listed).toMatchObject({ phase: 'Serving', servingVersion: '1', reason: 'NodeOffline', message: expect.stringContaining('since 2026-01-01T00:00:00Z') });
    await p2.publishRaw(JSON.stringify({ state: 'online', node: 'p2' }), presenceTopic(DEFAULT_TOPIC_PREFIX, 'p2'));
    await until(() => getModel('pr')?.status?.nodes?.length === 0, 'p2 online again, not listed');
  });

  it('dedupes by msg_id, ignores reports about an older generation, and drops malformed messages', async () => {
    api.create(TYPES.nodes, node('d1'));
    const d1 = await simNode('d1');
    const { controller: ctl, metrics } = await controller();
    api.create(TYPES.inferencemodels, model('dd'));
    await d1.waitFor((n) => n.held.has('default/dd'));
    api.patch(TYPES.inferencemodels, 'default', 'dd', { spec: { targetVersion: '2' } });
    await d1.waitFor((n) => n.generationOf('default/dd') === 2);
    await d1.report({ namespace: 'default', name: 'dd', observedGeneration: 2, phase: 'Serving', servingVersion: '2' });
    await until(() => getModel('dd')?.status?.servingVersion === '2', 'serving 2');
    // Older generation arrives late: ignored.
    await d1.report({ namespace: 'default', name: 'dd', observedGeneration: 1, phase: 'Failed', reason: 'Old' });
    // Garbage of every kind: not JSON, bad envelope, wrong operation, wrong node in the topic, oversized, unknown resource.
    await d1.publishRaw('not json');
    await d1.publishRaw(JSON.stringify({ header: {}, route: {} }));
    await d1.publishRaw(JSON.stringify(d1.statusEnvelope({ namespace: 'default', name: 'dd', observedGeneration: 2, phase: 'Failed' })).replace('"status"', '"explode"'));
    await d1.publishRaw(JSON.stringify({ ...d1.statusEnvelope({ namespace: 'default', name: 'dd', observedGeneration: 2, phase: 'Failed' }), content: { node: 'other-node', namespace: 'default', name: 'dd', observedGeneration: 2, phase: 'Failed', time: 'x' } }));
    await d1.publishRaw(Buffer.alloc(2 * 1024 * 1024, 0x20));
    await d1.report({ namespace: 'default', name: 'no-such-model', observedGeneration: 1, phase: 'Serving' });
    // The same msg_id twice: the second (a Failed) is a duplicate and ignored.
    const env = d1.statusEnvelope({ namespace: 'default', name: 'dd', observedGeneration: 2, phase: 'Serving', servingVersion: '2', message: 'first' });
    await d1.publishRaw(JSON.stringify(env));
    await d1.publishRaw(JSON.stringify({ ...env, content: { ...env.content, phase: 'Failed', message: 'dup' } }));
    const count = async (result: string) => (await metrics.inbound.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
    // The unknown resource is a locally applied model to the controller: counted apart, not dropped as bad.
    await until(async () => ctl.stats.statusDropped >= 5 && ctl.stats.localModelStatuses === 1 && (await count('duplicate')) === 1 && (await count('stale')) === 1, 'all messages handled');
    expect(ctl.stats.statusAccepted).toBe(2);
    await ctl.writer.idle();
    const m = getModel('dd');
    // The duplicate (a Failed) was ignored: one node, Serving 2, none listed as failed.
    expect(m.status).toMatchObject({ phases: { Serving: 1 }, servingVersion: '2', nodes: [] });
    expect(cond(m, 'Degraded').status).toBe('False');
  });

  it('coalesces status writes: many reports, few writes', async () => {
    api.create(TYPES.nodes, node('c1'));
    const c1 = await simNode('c1');
    const { controller: ctl } = await controller({ statusIntervalMs: 400 });
    api.create(TYPES.inferencemodels, model('co'));
    await c1.waitFor((n) => n.held.has('default/co'));
    await ctl.writer.idle();
    const before = api.requests.filter((r) => r.path.endsWith('/co/status')).length;
    const t0 = Date.now();
    // The last one differs (Serving), so the resource shows it was written.
    for (let i = 0; i < 200; i++) await c1.report({ namespace: 'default', name: 'co', observedGeneration: 1, phase: i === 199 ? 'Serving' : 'Downloading', servingVersion: i === 199 ? '1' : undefined, progress: { bytes: i * 1000, totalBytes: 200_000 }, message: `chunk ${i}` });
    await until(() => ctl.stats.statusAccepted >= 200, '200 reports accepted');
    await until(() => getModel('co')?.status?.readyNodes === 1, 'last report written');
    const writes = api.requests.filter((r) => r.path.endsWith('/co/status')).length - before;
    // At most one write per 400 ms interval over the time it took, whatever that time was.
    const bound = Math.ceil((Date.now() - t0) / 400) + 2;
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThanOrEqual(bound);
  });

  it('retries a status write that hits 409 Conflict', async () => {
    api.create(TYPES.nodes, node('r1'));
    const r1 = await simNode('r1');
    const { controller: ctl, metrics } = await controller();
    api.create(TYPES.inferencemodels, model('rt'));
    await r1.waitFor((n) => n.held.has('default/rt'));
    await ctl.writer.idle();
    api.failNext({ method: 'PATCH', path: /\/rt\/status$/, status: 409, times: 2 });
    await r1.report({ namespace: 'default', name: 'rt', observedGeneration: 1, phase: 'Serving', servingVersion: '1' });
    await until(() => getModel('rt')?.status?.servingVersion === '1', 'status written after conflicts');
    const conflicts = (await metrics.statusWrites.get()).values.find((v) => v.labels.result === 'conflict')?.value;
    expect(conflicts).toBe(2);
  });

  it('holds back a bad resource with Degraded and never sends it', async () => {
    api.create(TYPES.nodes, node('b1'));
    const b1 = await simNode('b1');
    await controller({ requireDigest: true });
    // The CRD's CEL rules refuse these at the API server...
    expect(() => api.create(TYPES.inferencemodels, model('nover', { targetVersion: '7' }))).toThrow(/targetVersion must be one of the manifest's versions/);
    // ...which an API server before 1.25 does not have, nor do resources stored before the CRD
    // had the rules: there the controller holds them back itself.
    const crd = api.get(TYPES.crds, undefined, 'inferencemodels.ai.kubeedge.io');
    api.patch(TYPES.crds, undefined, crd.metadata.name, { spec: { versions: JSON.parse(JSON.stringify(crd.spec.versions, (k, v) => (k === 'x-kubernetes-validations' ? undefined : v))) } });
    api.create(TYPES.inferencemodels, model('nover', { targetVersion: '7' }));
    api.create(TYPES.inferencemodels, model('dup', { manifest: [{ version: '1', downloadURL: 'http://x/1' }, { version: '1', downloadURL: 'http://x/1b' }], targetVersion: '' }));
    api.create(TYPES.inferencemodels, model('nodigest', { manifest: [{ version: '1', downloadURL: 'http://x/1' }] }));
    api.create(TYPES.inferencemodels, model('good'));
    await b1.waitFor((n) => n.held.has('default/good'));
    await until(() => cond(getModel('nover'), 'Degraded')?.reason === 'TargetVersionNotInManifest', 'nover degraded');
    await until(() => cond(getModel('dup'), 'Degraded')?.reason === 'DuplicateVersion', 'dup degraded');
    await until(() => cond(getModel('nodigest'), 'Degraded')?.reason === 'MissingDigest', 'nodigest degraded');
    expect(cond(getModel('nover'), 'Degraded').message).toContain('"7"');
    expect([...b1.everHeld].sort()).toEqual(['default/good']);
    // Fixing it sends it.
    api.patch(TYPES.inferencemodels, 'default', 'nover', { spec: { targetVersion: '2' } });
    await b1.waitFor((n) => n.held.get('default/nover')?.spec.targetVersion === '2');
    await until(() => cond(getModel('nover'), 'Degraded')?.status === 'False', 'nover no longer degraded');
  });

  it('runs an image resource as an owned Deployment and Service, tells agents nothing, and cleans up on delete', async () => {
    api.create(TYPES.nodes, node('i1', { arch: 'arm64' }));
    const i1 = await simNode('i1');
    await controller();
    api.create(TYPES.inferencemodels, model('yolo', { image: 'registry.example/yolo:1', replicas: 2, nodeSelector: { arch: 'arm64' } }));
    const dep = await until(() => api.get(TYPES.deployments, 'default', 'im-yolo'), 'deployment');
    const svc = await until(() => api.get(TYPES.services, 'default', 'im-yolo'), 'service');
    const uid = getModel('yolo').metadata.uid;
    expect(dep.spec.replicas).toBe(2);
    expect(dep.spec.template.spec.nodeSelector).toEqual({ arch: 'arm64' });
    expect(dep.spec.template.spec.containers[0].image).toBe('registry.example/yolo:1');
    expect(dep.metadata.ownerReferences[0]).toMatchObject({ kind: 'InferenceModel', name: 'yolo', uid, controller: true });
    expect(svc.metadata.ownerReferences[0].uid).toBe(uid);
    await until(() => getModel('yolo')?.status?.url === 'http://im-yolo.default.svc:8000', 'status.url');
    // The Deployment becoming ready shows in the resource's status.
    api.patch(TYPES.deployments, 'default', 'im-yolo', { status: { readyReplicas: 2, replicas: 2 } }, { status: true });
    await until(() => cond(getModel('yolo'), 'Ready')?.status === 'True', 'Ready from the Deployment');
    // An edit of the image rolls the Deployment.
    api.patch(TYPES.inferencemodels, 'default', 'yolo', { spec: { image: 'registry.example/yolo:2' } });
    await until(() => api.get(TYPES.deployments, 'default', 'im-yolo')?.spec.template.spec.containers[0].image === 'registry.example/yolo:2', 'new image');
    api.remove(TYPES.inferencemodels, 'default', 'yolo');
    await until(() => !api.get(TYPES.deployments, 'default', 'im-yolo') && !api.get(TYPES.services, 'default', 'im-yolo'), 'garbage collected');
    expect(i1.everHeld.size).toBe(0);
  });

  it('switching a resource from image to manifest removes its Deployment and Service and sends it to the agents', async () => {
    api.create(TYPES.nodes, node('sw1'));
    const sw1 = await simNode('sw1');
    await controller();
    api.create(TYPES.inferencemodels, model('sw', { image: 'registry.example/sw:1' }));
    await until(() => api.get(TYPES.deployments, 'default', 'im-sw') && api.get(TYPES.services, 'default', 'im-sw'), 'owned objects');
    api.patch(TYPES.inferencemodels, 'default', 'sw', { spec: { image: null } });
    await sw1.waitFor((n) => n.held.has('default/sw'), WAIT_MS, 'sw sent to the agent');
    await until(() => !api.get(TYPES.deployments, 'default', 'im-sw') && !api.get(TYPES.services, 'default', 'im-sw'), 'owned objects removed');
    await until(() => getModel('sw').status.url === undefined && getModel('sw').status.targetNodes === 1, 'status of an agent resource');
  });

  it('loses no update when the watch breaks mid-stream or expires with 410 Gone', async () => {
    api.create(TYPES.nodes, node('w1', { g: '1' }));
    api.create(TYPES.nodes, node('w2', { g: '2' }));
    const w1 = await simNode('w1');
    const w2 = await simNode('w2');
    const { metrics } = await controller();
    api.create(TYPES.inferencemodels, model('wa', { nodeSelector: { g: '1' } }));
    api.create(TYPES.inferencemodels, model('wb', { nodeSelector: { g: '1' } }));
    api.create(TYPES.inferencemodels, model('wd', { nodeSelector: { g: '1' } }));
    await w1.waitFor((n) => n.held.has('default/wa') && n.held.has('default/wb') && n.held.has('default/wd'));

    // Cut every watch, and change things while nobody is watching.
    api.breakWatches();
    api.patch(TYPES.inferencemodels, 'default', 'wa', { spec: { targetVersion: '2' } });
    api.remove(TYPES.inferencemodels, 'default', 'wb');
    await w1.waitFor((n) => n.held.get('default/wa')?.spec.targetVersion === '2' && !n.held.has('default/wb'), WAIT_MS, 'changes after a broken watch');

    // Expire the history (compaction) and break again: the controller must relist after 410.
    api.breakWatches();
    api.patch(TYPES.inferencemodels, 'default', 'wa', { spec: { nodeSelector: { g: '2' } } });
    api.create(TYPES.inferencemodels, model('wc', { nodeSelector: { g: '1' } }));
    api.remove(TYPES.inferencemodels, 'default', 'wd'); // only a relist can reveal this deletion
    api.compact();
    await w1.waitFor((n) => !n.held.has('default/wa') && n.held.has('default/wc') && !n.held.has('default/wd'), WAIT_MS, 'changes after 410');
    await w2.waitFor((n) => n.held.has('default/wa'));
    const gone = (await metrics.watchRestarts.get()).values.filter((v) => v.labels.reason === 'gone').reduce((a, v) => a + v.value, 0);
    expect(gone).toBeGreaterThan(0);
    expect(w2.everHeld.has('default/wb') || w2.everHeld.has('default/wc')).toBe(false);
  });

  it('after a restart, converges nodes to what happened while the controller was down', async () => {
    api.create(TYPES.nodes, node('s1', { k: 'v' }));
    api.create(TYPES.nodes, node('s2'));
    const s1 = await simNode('s1');
    const s2 = await simNode('s2');
    const first = await startController(api, { brokerUrl: broker.url });
    api.create(TYPES.inferencemodels, model('keep', { nodeSelector: { k: 'v' } }));
    api.create(TYPES.inferencemodels, model('drop', { nodeSelector: { k: 'v' } }));
    await s1.waitFor((n) => n.held.has('default/keep') && n.held.has('default/drop'));
    await first.controller.stop();

    api.remove(TYPES.inferencemodels, 'default', 'drop');
    api.patch(TYPES.inferencemodels, 'default', 'keep', { spec: { targetVersion: '2' } });
    api.create(TYPES.inferencemodels, model('new', { nodeSelector: { k: 'v' } }));
    await controller();
    await s1.waitFor((n) => !n.held.has('default/drop') && n.held.get('default/keep')?.spec.targetVersion === '2' && n.held.has('default/new'), WAIT_MS, 'converged after restart');
    expect(s2.everHeld.size).toBe(0);
  });
});
