import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { startLinkNode, type LinkNode } from '../helpers/link-node.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { TYPES, model, node, startApi, startController, until } from './harness.js';

// Guarantee 7 over the mqtt transport: the node keeps a status until the controller acks it,
// after its write; a status sent while no controller listens reaches the next one.

let api: FakeKubeApi;
let broker: Broker;
const cleanups: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  api = await startApi();
  broker = await startMosquitto();
});
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
  await broker.close();
  await api.stop();
});

// n1 is the one target: the resource's counts show each report (it lists only nodes needing a person).
const status = () => api.get(TYPES.inferencemodels, 'default', 'm')?.status;

describe('status acks over mqtt', () => {
  it('acks after the write, and a status sent while the controller restarts reaches the new one', async () => {
    api.create(TYPES.nodes, node('n1'));
    api.create(TYPES.inferencemodels, model('m'));
    const first = await startController(api, { brokerUrl: broker.url });
    cleanups.push(() => first.controller.stop());
    const n: LinkNode = startLinkNode({ node: 'n1', brokerUrl: broker.url, ackTimeoutMs: 300, ackMaxDelayMs: 1000 });
    cleanups.push(() => n.stop());
    n.report({ namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Downloading', message: 's-1' });
    await until(() => status()?.phases?.Downloading === 1 && n.store.outbox.depth() === 0, 's-1 written and acked');
    expect((await first.metrics.acksSent.get()).values[0].value).toBeGreaterThanOrEqual(1);
    await first.controller.stop();
    // No controller: the broker PUBACKs it, and nobody has it.
    n.report({ namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Serving', servingVersion: '1', message: 's-2' });
    await until(() => n.store.outbox.awaitingAck() === 1, 's-2 published, not acked');
    const second = await startController(api, { brokerUrl: broker.url });
    cleanups.push(() => second.controller.stop());
    await until(() => status()?.phases?.Serving === 1 && n.store.outbox.depth() === 0, 's-2 resent to the new controller, written and acked');
    expect(api.get(TYPES.inferencemodels, 'default', 'm').status.readyNodes).toBe(1);
  });
});
