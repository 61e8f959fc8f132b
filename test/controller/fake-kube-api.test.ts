import { Watch } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { LeaderElector } from '../../controller/kube/lease.js';
import { KubeApiError, kubeRest, type KubeRest } from '../../controller/kube/rest.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { TYPES, kubeConfigFor, model, startApi, until } from './harness.js';
import { WAIT_MS } from '../helpers/wait.js';

// The fake API server speaks the protocol the controller relies on, through the same clients
// the controller uses (@kubernetes/client-node's Watch and KubeConfig).

let api: FakeKubeApi;
let rest: KubeRest;
const IM = '/apis/ai.kubeedge.io/v1alpha1/namespaces/default/inferencemodels';

beforeEach(async () => {
  api = await startApi();
  rest = kubeRest(kubeConfigFor(api));
});
afterEach(() => api.stop());

const err = (p: Promise<unknown>) => p.then(() => undefined, (e: KubeApiError) => e);

function watch(path: string, query: Record<string, string | number | boolean | undefined>) {
  const events: Array<{ type: string; object: any }> = [];
  let done: unknown = 'open';
  const w = new Watch(kubeConfigFor(api));
  const ctl = w.watch(path, query, (type, object) => events.push({ type, object }), (e) => (done = e));
  return { events, done: () => done, abort: async () => (await ctl).abort() };
}

describe('fake Kubernetes API server', () => {
  it('serves discovery with short names and the status subresource', async () => {
    const groups = await rest.request('GET', '/apis');
    expect(groups.groups.map((g: any) => g.name)).toContain('ai.kubeedge.io');
    const list = await rest.request('GET', '/apis/ai.kubeedge.io/v1alpha1');
    expect(list.resources.map((r: any) => r.name)).toEqual(['inferencemodels', 'inferencemodels/status']);
    expect(list.resources[0].shortNames).toEqual(['im']);
  });

  it('lists with a resourceVersion and watches from it, with bookmarks, then 410 Gone after compaction', async () => {
    await rest.request('POST', IM, { body: model('a') });
    const list = await rest.request('GET', IM);
    await rest.request('POST', IM, { body: model('b') });
    const w = watch(IM, { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true });
    await rest.request('DELETE', `${IM}/a`);
    await until(() => w.events.some((e) => e.type === 'BOOKMARK'), 'a bookmark');
    expect(w.events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED b', 'DELETED a']);
    await w.abort();
    api.compact();
    const stale = watch(IM, { resourceVersion: list.metadata.resourceVersion });
    await until(() => stale.events.length > 0, 'an ERROR event');
    expect(stale.events[0]).toMatchObject({ type: 'ERROR', object: { code: 410, reason: 'Expired' } });
  });

  it('keeps spec and status apart: the status subresource changes only status, spec edits bump generation', async () => {
    const created = await rest.request('POST', IM, { body: { ...model('s'), status: { readyNodes: 9 } } });
    expect(created.status).toBeUndefined();
    expect(created.metadata.generation).toBe(1);
    const st = await rest.request('PATCH', `${IM}/s/status`, { body: { status: { readyNodes: 1 }, spec: { targetVersion: '2' } }, contentType: 'application/merge-patch+json' });
    expect(st.status.readyNodes).toBe(1);
    expect(st.spec.targetVersion).toBe('1');
    expect(st.metadata.generation).toBe(1);
    const sp = await rest.request('PATCH', `${IM}/s`, { body: { spec: { targetVersion: '2' }, status: { readyNodes: 5 } }, contentType: 'application/merge-patch+json' });
    expect(sp.metadata.generation).toBe(2);
    expect(sp.status.readyNodes).toBe(1);
  });

  it('answers 409 on a stale resourceVersion, 415 to a strategic patch of a custom resource, 422 to a schema violation', async () => {
    const a = await rest.request('POST', IM, { body: model('c') });
    await rest.request('PUT', `${IM}/c`, { body: { ...a, spec: { ...a.spec, targetVersion: '2' } } });
    expect((await err(rest.request('PUT', `${IM}/c`, { body: { ...a, spec: { ...a.spec, targetVersion: '1' } } })))?.status).toBe(409);
    expect((await err(rest.request('PATCH', `${IM}/c`, { body: { metadata: { resourceVersion: a.metadata.resourceVersion }, spec: { replicas: 2 } }, contentType: 'application/merge-patch+json' })))?.status).toBe(409);
    expect((await err(rest.request('PATCH', `${IM}/c`, { body: { spec: { replicas: 2 } }, contentType: 'application/strategic-merge-patch+json' })))?.status).toBe(415);
    const bad = await err(rest.request('POST', IM, { body: model('d', { deployToLayer: 'fog', replicas: 1000 }) }));
    expect(bad?.status).toBe(422);
    expect(bad?.message).toMatch(/deployToLayer/);
    expect((await err(rest.request('POST', IM, { body: model('c') })))?.status).toBe(409);
  });

  it('prunes unknown fields but keeps the seed spelling fraemworkType', async () => {
    const o = await rest.request('POST', IM, { body: model('p', { fraemworkType: 'onnx', bogus: 1 }) });
    expect(o.spec.fraemworkType).toBe('onnx');
    expect(o.spec).not.toHaveProperty('bogus');
  });

  it('keeps apiVersion, kind and metadata of objects whose CRD schema does not declare them (KubeEdge\'s Rule CRD)', async () => {
    // Like rules.kubeedge.io: the schema lists spec only.
    await rest.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', { body: crd('rules', 'Rule', { type: 'object', properties: { spec: { type: 'object', properties: { source: { type: 'string' } } } } }) });
    await rest.request('POST', '/apis/rules.kubeedge.io/v1/namespaces/default/rules', { body: { apiVersion: 'rules.kubeedge.io/v1', kind: 'Rule', metadata: { name: 'r1', labels: { a: 'b' } }, spec: { source: 'x', junk: 1 }, other: 2 } });
    const got = await rest.request<any>('GET', '/apis/rules.kubeedge.io/v1/namespaces/default/rules/r1');
    expect(got.apiVersion).toBe('rules.kubeedge.io/v1');
    expect(got.kind).toBe('Rule');
    expect(got.metadata).toMatchObject({ name: 'r1', namespace: 'default', labels: { a: 'b' } });
    expect(got.metadata.uid).toBeTruthy();
    expect(got.spec).toEqual({ source: 'x' });
    expect(got.other).toBeUndefined();
  });

  it('refuses a CRD whose schema is not structural, with the API server\'s field paths', async () => {
    const bad = async (schema: unknown) => (await err(rest.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', { body: crd('things', 'Thing', schema) }))) as KubeApiError;
    const untyped = await bad({ type: 'object', properties: { spec: { properties: { a: { type: 'string' } } } } });
    expect(untyped.status).toBe(422);
    expect(untyped.message).toContain('spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields');
    expect((await bad({ type: 'object', properties: { spec: { type: 'object', anyOf: [{ type: 'object' }] } } })).message).toContain('properties[spec].anyOf[0].type: Forbidden: must be empty to be structural');
    expect((await bad({ type: 'object', properties: { spec: { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: { type: 'string' } } } })).message).toContain('additionalProperties and properties are mutual exclusive');
    expect((await bad({ type: 'object', properties: { metadata: { type: 'object', properties: { labels: { type: 'object' } } } } })).message).toContain('must not specify anything other than name and generateName');
    expect((await bad({ type: 'object', properties: { spec: { type: 'array' } } })).message).toContain('properties[spec].items: Required value: must be specified');
    expect((await bad({ type: 'object', properties: { spec: { type: 'object', oneOf: [{ properties: { b: {} } }] } } })).message).toContain('Required value: because it is defined in');
    expect((await bad({ type: 'string' })).message).toContain('must be object at the root');
    // Nothing of a refused CRD is served.
    expect(await err(rest.request('GET', '/apis/example.com/v1/namespaces/default/things'))).toMatchObject({ status: 404 });
    // Structural: int-or-string's anyOf and value validations naming declared fields are fine.
    await rest.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
      body: crd('things', 'Thing', { type: 'object', properties: { spec: { type: 'object', properties: { port: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] }, a: { type: 'string' } }, oneOf: [{ required: ['a'] }, { properties: { a: { pattern: '^x' } } }] } } }),
    });
  });

  it('merges strategic patches of a Deployment by container name and garbage-collects owned objects', async () => {
    const owner = await rest.request('POST', IM, { body: model('o') });
    const ref = [{ apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', name: 'o', uid: owner.metadata.uid, controller: true }];
    await rest.request('POST', '/apis/apps/v1/namespaces/default/deployments', {
      body: { metadata: { name: 'd', ownerReferences: ref }, spec: { template: { spec: { containers: [{ name: 'a', image: 'a:1' }, { name: 'b', image: 'b:1' }] } } } },
    });
    const d = await rest.request('PATCH', '/apis/apps/v1/namespaces/default/deployments/d', { body: { spec: { template: { spec: { containers: [{ name: 'b', image: 'b:2' }] } } } }, contentType: 'application/strategic-merge-patch+json' });
    expect(d.spec.template.spec.containers.map((c: any) => c.image)).toEqual(['a:1', 'b:2']);
    await rest.request('DELETE', `${IM}/o`);
    await until(() => !api.get(TYPES.deployments, 'default', 'd'), 'cascading delete');
    // A dependent written after its owner went (a write in flight at the delete) goes too.
    await rest.request('POST', '/api/v1/namespaces/default/services', { body: { metadata: { name: 'late', ownerReferences: ref }, spec: {} } });
    await until(() => !api.get(TYPES.services, 'default', 'late'), 'a late dependent collected');
  });

  it('lets exactly one of two candidates hold a Lease, and hands it over when released', async () => {
    const log = silentLogger();
    const a = new LeaderElector({ rest, namespace: 'kube-system', name: 'l', identity: 'a', log, leaseDurationSec: 30 });
    const b = new LeaderElector({ rest, namespace: 'kube-system', name: 'l', identity: 'b', log, leaseDurationSec: 30 });
    const results = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
    expect(results.filter(Boolean)).toHaveLength(1);
    const [winner, loser] = results[0] ? [a, b] : [b, a];
    expect(await loser.tryAcquireOrRenew()).toBe(false);
    expect(await winner.tryAcquireOrRenew()).toBe(true);
    // An expired lease is taken over.
    const lease = api.get(TYPES.leases, 'kube-system', 'l');
    api.patch(TYPES.leases, 'kube-system', 'l', { spec: { renewTime: '2000-01-01T00:00:00.000000Z' } });
    expect(await loser.tryAcquireOrRenew()).toBe(true);
    expect(api.get(TYPES.leases, 'kube-system', 'l').spec.leaseTransitions).toBe(lease.spec.leaseTransitions + 1);
  });

  it('a standby takes over when the leader stops renewing (crash), and only one leads at a time', async () => {
    const log = silentLogger();
    const mk = (identity: string) => new LeaderElector({ rest, namespace: 'kube-system', name: 'fo', identity, log, leaseDurationSec: 1, retryPeriodMs: 100, renewDeadlineMs: 500 });
    const a = mk('a');
    const b = mk('b');
    const crashA = new AbortController();
    const stopB = new AbortController();
    let aLeads = false;
    const runA = a.run(crashA.signal, () => (aLeads = true));
    await until(() => aLeads, 'a leads');
    let bLeads = false;
    const gets = () => api.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/leases/fo')).length;
    const before = gets();
    const runB = b.run(stopB.signal, () => (bLeads = true));
    await until(() => gets() >= before + 6, 'b trying while a renews');
    expect(bLeads).toBe(false);
    crashA.abort(); // a dies without releasing
    await runA;
    await until(() => bLeads, 'b takes over after the lease expires', WAIT_MS);
    expect(api.get(TYPES.leases, 'kube-system', 'fo').spec.holderIdentity).toBe('b');
    stopB.abort();
    await runB;
  });
});

function crd(plural: string, kind: string, schema: unknown) {
  const group = plural === 'rules' ? 'rules.kubeedge.io' : 'example.com';
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}` },
    spec: { group, scope: 'Namespaced', names: { plural, singular: kind.toLowerCase(), kind }, versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: schema } }] },
  };
}
