import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { kubeedgeTransport } from '../../controller/transport/kubeedge.js';
import { freePort } from '../helpers/ports.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { FakeKubeEdgeRouter } from '../fakes/kubeedge-router.js';
import { SimNode } from '../fakes/sim-node.js';
import { TYPES, model, node, startApi, startController, until } from './harness.js';
import { WAIT_MS } from '../helpers/wait.js';

// The kubeedge transport end to end: controller -> (fake) cloudcore Router -> each node's own
// mosquitto -> simulated node, and node status -> Router -> the controller's HTTP receiver.
// The Rules are the ones deploy/kubeedge/rules.yaml ships.

let api: FakeKubeApi;
const brokers: Broker[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeEach(async () => {
  api = await startApi();
  brokers.push(await startMosquitto(), await startMosquitto());
});
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
  for (const b of brokers.splice(0)) await b.close();
  await api.stop();
});

async function setUp(nodes: string[]) {
  const receiverPort = await freePort();
  const router = await new FakeKubeEdgeRouter({
    nodes: Object.fromEntries(nodes.map((n, i) => [n, brokers[i].url])),
    restRules: [{ ruleNamespace: 'default', path: '/ai/inferencemodel', topic: 'ai/inferencemodel' }],
    eventbusRules: nodes.map((n) => ({ node: n, ruleNamespace: 'default', topic: `ai/inferencemodel-status/${n}`, resource: `http://127.0.0.1:${receiverPort}/status` })),
  }).start();
  cleanups.push(() => router.stop());
  const sims = await Promise.all(nodes.map(async (n, i) => new SimNode({ node: n, brokerUrl: brokers[i].url }).start(false)));
  cleanups.push(() => Promise.all(sims.map((s) => s.stop())));
  const transport = kubeedgeTransport({ routerUrl: router.url, ruleNamespace: 'default', receiverPort, receiverHost: '127.0.0.1', log: silentLogger() });
  const { controller } = await startController(api, { transport, options: { syncIntervalMs: 60_000 } });
  cleanups.push(() => controller.stop());
  return { router, sims, controller };
}

describe('kubeedge transport through the Router', () => {
  it('delivers specs to the right node broker on the topic the agent subscribes, and brings status back', async () => {
    api.create(TYPES.nodes, node('edge-a', { site: 'a' }));
    api.create(TYPES.nodes, node('edge-b', { site: 'b' }));
    const { router, sims } = await setUp(['edge-a', 'edge-b']);
    const [a, b] = sims;
    api.create(TYPES.inferencemodels, model('m', { nodeSelector: { site: 'a' } }));
    await a.waitFor((n) => n.held.has('default/m'), WAIT_MS, 'm on edge-a');
    expect(router.posts.some((p) => p.uri === '/edge-a/default/ai/inferencemodel/edge-a/default/m' && p.topic === 'ai/inferencemodel/edge-a/default/m')).toBe(true);

    // Status and hello travel node broker -> Router -> receiver, payload as-is.
    await a.report({ namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Serving', servingVersion: '1' });
    await until(() => api.get(TYPES.inferencemodels, 'default', 'm')?.status?.readyNodes === 1, 'status via the Router');
    await b.hello();
    await b.waitFor((n) => n.received.some((m) => m.route.operation === 'sync'), WAIT_MS, 'sync answering hello');
    expect(b.everHeld.size).toBe(0);

    api.remove(TYPES.inferencemodels, 'default', 'm');
    await a.waitFor((n) => !n.held.has('default/m'), WAIT_MS, 'delete via the Router');
  });

  it('a node whose broker was down when the spec went out gets it from the sync after its hello', async () => {
    api.create(TYPES.nodes, node('edge-a'));
    const { sims, router } = await setUp(['edge-a']);
    const [a] = sims;
    await brokers[0].stop();
    api.create(TYPES.inferencemodels, model('late'));
    // The Router answered 200 and dropped it (the node was unreachable): nothing to retry on.
    await until(() => router.posts.some((p) => p.uri.endsWith('/default/late') && p.status === 200), 'the post for late');
    await brokers[0].start();
    await until(() => a.client.connected, 'sim node reconnected');
    await a.hello();
    await a.waitFor((n) => n.held.has('default/late'), WAIT_MS, 'late spec after hello');
  });

  it('retries when the Router itself refuses, and drops malformed posts to the receiver', async () => {
    api.create(TYPES.nodes, node('edge-a'));
    const receiverPort = await freePort();
    const transport = kubeedgeTransport({ routerUrl: 'http://127.0.0.1:1', ruleNamespace: 'default', receiverPort, receiverHost: '127.0.0.1', log: silentLogger() });
    const { controller, metrics } = await startController(api, { transport });
    cleanups.push(() => controller.stop());
    api.create(TYPES.inferencemodels, model('x'));
    await until(async () => ((await metrics.sendFailures.get()).values.reduce((a, v) => a + v.value, 0) ?? 0) >= 2, 'failed sends retried');
    expect(controller.sentTo('edge-a')).toEqual([]);
    const res = await fetch(`http://127.0.0.1:${receiverPort}/status`, { method: 'POST', body: '{"not":"an envelope"}' });
    expect(res.status).toBe(200);
    await until(() => controller.stats.statusDropped === 1, 'malformed post dropped');
  });
});
