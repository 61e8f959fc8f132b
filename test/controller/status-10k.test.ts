import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { MAX_ATTENTION } from '../../controller/status/aggregate.js';
import { DEFAULT_STATUS_TOPIC, makeEnvelope, statusTopic, type StatusContent } from '../../shared/index.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import type { Broker } from '../helpers/mosquitto.js';
import { TYPES, model, node, perTestApiAndBroker, startController, until } from './harness.js';

// Issue 12 item 4, end to end: 10,000 nodes report through a real mosquitto to the real
// controller, which writes the resource into the fake API server; the stored object stays
// bounded by the caps (counts, not lists), far under etcd's 1.5 MiB object limit, while the
// controller's /status detail still has every node. One MQTT client publishes for all the nodes
// (the status topic names the node; statuses are not signed), so the test stays light.

let api: FakeKubeApi;
let broker: Broker;
const cleanups = perTestApiAndBroker((a, b) => ([api, broker] = [a, b]));

const NODES = 10_000;
const ETCD_LIMIT = 1.5 * 1024 * 1024;
const name = (i: number) => `edge-${String(i).padStart(5, '0')}`;

/** The phase each node reports: most serve 2, some still serve 1, a few failed or hold the update. */
function reportOf(i: number): Pick<StatusContent, 'phase' | 'servingVersion' | 'targetVersion' | 'reason' | 'message' | 'deferredUntil'> {
  if (i % 250 === 7) return { phase: 'Failed', servingVersion: '1', targetVersion: '2', reason: 'DigestMismatch', message: `sha256 of 2.tgz does not match on ${name(i)}` };
  if (i % 1000 === 8) return { phase: 'Deferred', servingVersion: '1', targetVersion: '2', deferredUntil: '2030-01-01T00:00:00.000Z' };
  if (i % 10 === 3) return { phase: 'Downloading', servingVersion: '1', targetVersion: '2' };
  return { phase: 'Serving', servingVersion: '2', targetVersion: '2' };
}

describe('status with 10,000 nodes reporting', () => {
  it('keeps the stored resource bounded (counts per version and phase, at most 20 nodes listed) while /status has every node', async () => {
    for (let i = 0; i < NODES; i++) api.create(TYPES.nodes, node(name(i)));
    api.create(TYPES.inferencemodels, model('big', { targetVersion: '2' }));
    const { controller } = await startController(api, { brokerUrl: broker.url });
    cleanups.push(() => controller.stop());
    const get = () => api.get(TYPES.inferencemodels, 'default', 'big');
    await until(() => get()?.status?.targetNodes === NODES && get(), 'the controller to target every node');
    const generation = get().metadata.generation as number;

    const client = await mqtt.connectAsync(broker.url, { clientId: `status-10k-${process.pid}` });
    cleanups.push(() => client.endAsync());
    for (let i = 0; i < NODES; i++) {
      const content: StatusContent = { node: name(i), namespace: 'default', name: 'big', observedGeneration: generation, time: new Date().toISOString(), ...reportOf(i) };
      const env = makeEnvelope('status', content, { source: name(i), resource: 'default/inferencemodel/big' });
      await client.publishAsync(statusTopic(DEFAULT_STATUS_TOPIC, name(i)), JSON.stringify(env), { qos: 1 });
    }

    const expected = { Serving: 0, Downloading: 0, Failed: 0, Deferred: 0 };
    for (let i = 0; i < NODES; i++) expected[reportOf(i).phase as keyof typeof expected]++;
    const status = (await until(() => {
      const s = get()?.status;
      return s?.phases?.Serving === expected.Serving && s.phases.Downloading === expected.Downloading && s.phases.Failed === expected.Failed && s.phases.Deferred === expected.Deferred && s;
    }, 'every report counted in status.phases')) as Record<string, any>;

    const bytes = Buffer.byteLength(JSON.stringify(get()));
    expect(bytes).toBeLessThan(ETCD_LIMIT / 10);
    expect(status.readyNodes).toBe(expected.Serving);
    expect(status.ready).toBe(`${expected.Serving}/${NODES}`);
    expect(status.versions).toEqual([
      { version: '2', nodes: expected.Serving },
      { version: '1', nodes: NODES - expected.Serving },
    ]);
    expect(status.serving).toBe(`2 (${expected.Serving} nodes), 1 (${NODES - expected.Serving})`);
    // Failed first, then Deferred; only the cap is listed, the rest counted.
    expect(status.nodes).toHaveLength(MAX_ATTENTION);
    expect(status.nodes.slice(0, expected.Failed).every((n: { phase: string }) => n.phase === 'Failed')).toBe(true);
    expect(status.nodesNotListed).toBe(expected.Failed + expected.Deferred - MAX_ATTENTION);

    const detail = controller.nodeDetail('default/big')!;
    expect(detail.targetNodes).toBe(NODES);
    expect(detail.nodes).toHaveLength(NODES);
    expect(detail.nodes.filter((n) => n.phase === 'Failed')).toHaveLength(expected.Failed);
    console.log(`status-10k: the stored InferenceModel is ${bytes} bytes with ${NODES} nodes reporting`);
  });
});
