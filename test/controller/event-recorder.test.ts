import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { EventRecorder } from '../../controller/kube/events.js';
import { kubeRest } from '../../controller/kube/rest.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { TYPES, kubeConfigFor, startApi } from './harness.js';

// The Event recorder against the fake API server, as two controllers (an old and a new leader)
// would use it: a step both write is stored once when the Event's name comes from the step.

let api: FakeKubeApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api?.stop();
});

const regarding = { apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', name: 'm', namespace: 'default', uid: 'uid-1' };
const recorder = (instance: string) => {
  const kc = kubeConfigFor(api);
  return new EventRecorder({ rest: kubeRest(kc), log: silentLogger(), component: 'modeld-controller', instance });
};
const stored = (reason: string) => api.list(TYPES.eventsV1).filter((e: any) => e.reason === reason && e.regarding?.uid === 'uid-1');

describe('EventRecorder', () => {
  it('a step written by two leaders with once is stored once (its name comes from object, reason and key); without once twice', async () => {
    const [a, b] = [recorder('ctl-a'), recorder('ctl-b')];
    await a.normal(regarding, 'BatchStarted', 'batch 2/3 started: its nodes get 2', { key: 'r1/2@t', once: true });
    await b.normal(regarding, 'BatchStarted', 'batch 2/3 started: its nodes get 2', { key: 'r1/2@t', once: true });
    expect(stored('BatchStarted')).toHaveLength(1);
    // Another step of the same reason is its own Event.
    await b.normal(regarding, 'BatchStarted', 'batch 3/3 started: its nodes get 2', { key: 'r1/3@t', once: true });
    expect(stored('BatchStarted')).toHaveLength(2);
    await a.warning(regarding, 'NodeFailed', 'edge-1 failed', { key: 'edge-1/2' });
    await b.warning(regarding, 'NodeFailed', 'edge-1 failed', { key: 'edge-1/2' });
    expect(stored('NodeFailed')).toHaveLength(2);
  });
});
