import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cellOf } from '../fakes/kube-api/jsonpath.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { TYPES, model, startApi } from './harness.js';

// The fake API server's CEL rules, Tables and Events, over HTTP as a client sees them.

let api: FakeKubeApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api?.stop();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) => fetch(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const IM = '/apis/ai.kubeedge.io/v1alpha1/namespaces/default/inferencemodels';

describe('fake API server: CEL, Tables, Events', () => {
  it("answers 422 Invalid with the CRD's CEL message and the field, as apiextensions-apiserver does", async () => {
    const res = await post(IM, model('x', { targetVersion: '9' }));
    expect(res.status).toBe(422);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'Invalid',
      code: 422,
      message: `InferenceModel.ai.kubeedge.io "x" is invalid: spec: Invalid value: "object": targetVersion must be one of the manifest's versions`,
      details: { name: 'x', group: 'ai.kubeedge.io', kind: 'InferenceModel', causes: [{ reason: 'FieldValueInvalid', field: 'spec', message: `Invalid value: "object": targetVersion must be one of the manifest's versions` }] },
    });
  });

  it('accepts what the controller accepts: targetVersion "" (the latest), an image resource whatever its targetVersion', async () => {
    expect((await post(IM, model('latest', { targetVersion: '' }))).status).toBe(201);
    expect((await post(IM, model('img', { image: 'example.com/m:1', manifest: [], targetVersion: 'v9' }))).status).toBe(201);
    expect((await post(IM, model('nomanifest', { manifest: [], targetVersion: 'v9' }))).status).toBe(422);
  });

  it('does not run the rules when the schema already found a blocking error (a type error), and says so', async () => {
    const res = await post(IM, model('y', { targetVersion: 9 }));
    const body = (await res.json()) as any;
    expect(body.message).toContain('spec.targetVersion: Invalid value: "integer": must be of type string');
    expect(body.message).toContain('some validation rules were not checked because the object was invalid');
    expect(body.message).not.toContain("manifest's versions");
  });

  it('refuses a rollout amount that is both a count and a percent, and a canary that is both a selector and an amount', async () => {
    const refused = async (name: string, rollout: unknown) => {
      const res = await post(IM, model(name, { rollout }));
      expect(res.status).toBe(422);
      return ((await res.json()) as any).message as string;
    };
    expect(await refused('both-batch', { batch: { count: 10, percent: 10 } })).toContain('spec.rollout.batch: Invalid value: "object": set count or percent, not both');
    expect(await refused('both-threshold', { failureThreshold: { count: 1, percent: 5 } })).toContain('spec.rollout.failureThreshold: Invalid value: "object": set count or percent, not both');
    expect(await refused('both-canary', { canary: { count: 1, percent: 5 } })).toContain('spec.rollout.canary: Invalid value: "object": set count or percent, not both');
    expect(await refused('sel-canary', { canary: { selector: { ring: 'canary' }, count: 1 } })).toContain('canary is a selector or an amount (count or percent), not both');
    for (const [name, rollout] of [['ok-count', { canary: { count: 1 }, batch: { percent: 10 }, failureThreshold: { count: 2 } }], ['ok-sel', { canary: { selector: { ring: 'canary' } } }]] as const) {
      expect((await post(IM, model(name, { rollout }))).status).toBe(201);
    }
  });

  it('serves a Table from additionalPrinterColumns for kubectl', async () => {
    api.create(TYPES.inferencemodels, model('t'));
    api.patch(TYPES.inferencemodels, 'default', 't', { status: { serving: '2 (3 nodes), 1 (1)', ready: '3/4', phase: 'Progressing', conditions: [] } }, { status: true });
    const res = await fetch(`${api.url}${IM}`, { headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json' } });
    const table = (await res.json()) as any;
    expect(table.kind).toBe('Table');
    expect(table.columnDefinitions.map((c: any) => c.name)).toEqual(['Name', 'Target', 'Serving', 'Ready', 'Phase', 'Model', 'Age']);
    expect(table.rows.find((r: any) => r.cells[0] === 't').cells.slice(0, 6)).toEqual(['t', '1', '2 (3 nodes), 1 (1)', '3/4', 'Progressing', 't']);
  });

  it('JSONPath cells: paths, indexes, filters; nothing found is null', () => {
    const o = { status: { conditions: [{ type: 'Ready', status: 'True' }, { type: 'Degraded', status: 'False' }] }, a: { 'b.c': 1 } };
    expect(cellOf(o, '.status.conditions[?(@.type=="Ready")].status')).toBe('True');
    expect(cellOf(o, '.status.conditions[-1].type')).toBe('Degraded');
    expect(cellOf(o, '.status.conditions[*].type')).toBe('Ready Degraded');
    expect(cellOf(o, ".a['b.c']")).toBe(1);
    expect(cellOf(o, '.status.nope')).toBeNull();
  });

  it('an events.k8s.io/v1 Event is listed as core/v1 by involvedObject field selectors (kubectl describe)', async () => {
    const m = api.get(TYPES.inferencemodels, 'default', 't');
    const regarding = { apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', name: 't', namespace: 'default', uid: m.metadata.uid };
    const bad = await post('/apis/events.k8s.io/v1/namespaces/default/events', { metadata: { name: 't.1' }, regarding, reason: 'R', type: 'Warning', note: 'n' });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as any).message).toMatch(/eventTime: Required value.*reportingController: Required value.*action: Required value/);
    const ok = await post('/apis/events.k8s.io/v1/namespaces/default/events', { metadata: { name: 't.2' }, regarding, reason: 'NodeFailed', type: 'Warning', note: 'node n1 failed', action: 'Report', eventTime: '2026-01-01T00:00:00.000000Z', reportingController: 'modeld-controller', reportingInstance: 'modeld-controller-x' });
    expect(ok.status).toBe(201);
    const sel = encodeURIComponent(`involvedObject.name=t,involvedObject.namespace=default,involvedObject.kind=InferenceModel,involvedObject.uid=${m.metadata.uid}`);
    const list = (await (await fetch(`${api.url}/api/v1/namespaces/default/events?fieldSelector=${sel}`)).json()) as any;
    expect(list.items).toEqual([expect.objectContaining({ apiVersion: 'v1', involvedObject: regarding, message: 'node n1 failed', reportingComponent: 'modeld-controller', reason: 'NodeFailed' })]);
    const none = (await (await fetch(`${api.url}/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=other`)).json()) as any;
    expect(none.items).toEqual([]);
  });
});
