import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { kubeedgeTransport } from '../../controller/transport/kubeedge.js';
import { freePort } from '../helpers/ports.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { FakeKubeEdgeRouter, type FakeRouterOptions } from '../fakes/kubeedge-router.js';
import { startLinkNode, type LinkNode } from '../helpers/link-node.js';
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

async function setUp(nodes: string[], routerOpts: Partial<FakeRouterOptions> = {}, opts: { sims?: boolean } = {}) {
  const receiverPort = await freePort();
  const router = await new FakeKubeEdgeRouter({
    nodes: Object.fromEntries(nodes.map((n, i) => [n, brokers[i].url])),
    restRules: [{ ruleNamespace: 'default', path: '/ai/inferencemodel', topic: 'ai/inferencemodel' }],
    eventbusRules: nodes.map((n) => ({ node: n, ruleNamespace: 'default', topic: `ai/inferencemodel-status/${n}`, resource: `http://127.0.0.1:${receiverPort}/status` })),
    ...routerOpts,
  }).start();
  cleanups.push(() => router.stop());
  const sims = opts.sims === false ? [] : await Promise.all(nodes.map(async (n, i) => new SimNode({ node: n, brokerUrl: brokers[i].url }).start(false)));
  cleanups.push(() => Promise.all(sims.map((s) => s.stop())));
  const newController = async () => {
    const transport = kubeedgeTransport({ routerUrl: router.url, ruleNamespace: 'default', receiverPort, receiverHost: '127.0.0.1', log: silentLogger() });
    const started = await startController(api, { transport, options: { syncIntervalMs: 60_000, retryBaseMs: 100 } });
    cleanups.push(() => started.controller.stop());
    return started;
  };
  const { controller, metrics } = await newController();
  return { router, sims, controller, metrics, newController };
}

const getEntry = (name: string, nodeName: string) => (api.get(TYPES.inferencemodels, 'default', name)?.status?.nodes ?? []).find((e: any) => e.node === nodeName);

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

  it('(an older Router that answered 200 for an offline node) the node gets the spec from the sync after its hello', async () => {
    api.create(TYPES.nodes, node('edge-a'));
    const { sims, router } = await setUp(['edge-a'], { noSessionAnswer: 'ok' });
    const [a] = sims;
    await brokers[0].stop();
    api.create(TYPES.inferencemodels, model('late'));
    // The Router answered 200 and dropped it (the node was unreachable): nothing to retry on.
    await until(() => router.posts.some((p) => p.uri.endsWith('/default/late') && p.status === 200), 'the post for late');
    await brokers[0].start();
    await until(() => a.client.connected && router.nodeConnected('edge-a'), 'sim node and edgecore reconnected');
    await a.hello();
    await a.waitFor((n) => n.held.has('default/late'), WAIT_MS, 'late spec after hello');
  });

  it('a node cloudcore has no session for: 500 after three tries a second apart, node shown unreachable, an Event, retried until it is back', async () => {
    api.create(TYPES.nodes, node('edge-a'));
    const { sims, router, metrics } = await setUp(['edge-a']);
    const [a] = sims;
    router.offline.add('edge-a');
    api.create(TYPES.inferencemodels, model('late'));
    await until(() => router.posts.find((p) => p.uri.endsWith('/default/late') && p.status === 500), 'a 500 from the Router');
    const answered = router.posts.find((p) => p.uri.endsWith('/default/late'))!;
    expect(answered.text).toMatch(/^All attempts fail:\n#1: cloudcore doesn't have session for node:edge-a\n#2: .*\n#3: /);
    expect(answered.ms).toBeGreaterThanOrEqual(1900); // three tries, a second apart
    await until(() => getEntry('late', 'edge-a')?.reason === 'NodeUnreachable', 'the node shown unreachable in status');
    await until(() => api.list(TYPES.events).find((e: any) => e.reason === 'NodeUnreachable' && e.involvedObject.name === 'edge-a'), 'a Warning Event');
    expect((await metrics.unreachableNodes.get()).values[0].value).toBe(1);
    // Retried with backoff (not in a loop): the node comes back and gets its spec.
    router.offline.delete('edge-a');
    await a.waitFor((n) => n.held.has('default/late'), WAIT_MS, 'the spec once the node is back');
    await until(() => getEntry('late', 'edge-a')?.reason !== 'NodeUnreachable', 'unreachable cleared');
    expect((await metrics.unreachableNodes.get()).values[0].value).toBe(0);
  });

  it('status arrives end to end through a Router that drops and delays, across a controller restart', async () => {
    api.create(TYPES.nodes, node('edge-a'));
    api.create(TYPES.inferencemodels, model('m'));
    // Every third status (and the last) is lost the first time it goes up; everything is delayed a little.
    const seen = new Set<string>();
    const drop = ({ direction, payload }: { direction: string; payload: Buffer }) => {
      const env = JSON.parse(payload.toString());
      if (direction !== 'up' || env.route?.operation !== 'status' || seen.has(env.header.msg_id)) return false;
      seen.add(env.header.msg_id);
      const k = Number(String(env.content.message).slice(2));
      return k % 3 === 0 || k === 10;
    };
    const { router, controller, newController } = await setUp(['edge-a'], { drop, delayMs: () => Math.floor(Math.random() * 30) }, { sims: false });
    const n: LinkNode = startLinkNode({ node: 'edge-a', brokerUrl: brokers[0].url, ackTimeoutMs: 300, ackMaxDelayMs: 1000 });
    cleanups.push(() => n.stop());
    // Failed until the last, so the node is listed in the resource with the message of its latest report.
    const report = (k: number) => n.report({ namespace: 'default', name: 'm', observedGeneration: 1, phase: k === 10 ? 'Serving' : 'Failed', servingVersion: k === 10 ? '1' : undefined, message: `s-${k}` });
    for (let k = 1; k <= 4; k++) report(k);
    await until(() => getEntry('m', 'edge-a')?.message === 's-4' && n.store.outbox.depth() === 0, 'the first statuses (s-3 resent, not overtaking s-4)');
    // The controller goes away (its receiver with it: the Router's posts fail and are dropped)...
    await controller.stop();
    for (let k = 5; k <= 7; k++) report(k);
    await until(() => n.store.outbox.awaitingAck() > 0 && router.forwarded.some((f) => f.status === 0), 'statuses posted to no receiver');
    // ...and a new one takes over.
    await newController();
    for (let k = 8; k <= 10; k++) report(k);
    // s-10, the one Serving report: the node is ready and no longer listed.
    await until(() => api.get(TYPES.inferencemodels, 'default', 'm')?.status?.readyNodes === 1 && !getEntry('m', 'edge-a'), 'the last status, dropped once, in the resource');
    await until(() => n.store.outbox.depth() === 0, 'every status acked');
    expect(router.dropped.up).toBeGreaterThanOrEqual(4);
    expect(api.get(TYPES.inferencemodels, 'default', 'm').status.readyNodes).toBe(1);
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
