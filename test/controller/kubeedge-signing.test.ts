import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { kubeedgeTransport } from '../../controller/transport/kubeedge.js';
import { generateSigningKey, privateKeyFromPem } from '../../shared/signing.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { FakeKubeEdgeRouter } from '../fakes/kubeedge-router.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { TYPES, model, node, startApi, startController, until } from './harness.js';

// Signed specs through the KubeEdge transport: the controller (in-process, signing key given)
// -> the fake cloudcore Router -> the node's mosquitto -> the real agent, which trusts only that
// key; its status (and the controller's signed acks) travel back the same way.

let api: FakeKubeApi;
let broker: Broker;
let work: string;
let server: ChaosServer;
let agent: AgentProcess | undefined;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kubeedge-signing-'));
  api = await startApi();
  broker = await startMosquitto();
  await makeTree(join(work, 'src'), { 'version.txt': '1', 'weights.bin': randomBytes(256) });
  server = await startChaosServer({ body: readFileSync(await packDir(join(work, 'src'), join(work, 'v1.tar.gz'), { gzip: true })) });
});

afterAll(async () => {
  await agent?.end();
  for (const c of cleanups.reverse()) await c();
  await server?.stop();
  await broker?.close();
  await api?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('signed specs through the KubeEdge Router', () => {
  it('a spec signed by the controller reaches the agent through the Router and is installed; the signed acks are accepted', async () => {
    const pair = generateSigningKey();
    const publicFile = join(work, 'public.pem');
    writeFileSync(publicFile, pair.publicPem);
    const receiverPort = await freePort();
    const router = await new FakeKubeEdgeRouter({
      nodes: { 'edge-a': broker.url },
      restRules: [{ ruleNamespace: 'default', path: '/ai/inferencemodel', topic: 'ai/inferencemodel' }],
      eventbusRules: [{ node: 'edge-a', ruleNamespace: 'default', topic: 'ai/inferencemodel-status/edge-a', resource: `http://127.0.0.1:${receiverPort}/status` }],
    }).start();
    cleanups.push(() => router.stop());
    api.create(TYPES.nodes, node('edge-a'));
    // What the Router publishes on the node's broker, as the agent gets it.
    const watcher = await mqtt.connectAsync(broker.url, { clientId: `watch-${process.pid}` });
    cleanups.push(() => watcher.endAsync(true));
    const delivered: Array<{ topic: string; keyId?: string; nonce?: string }> = [];
    const helloNonces: string[] = [];
    watcher.on('message', (topic, payload) => {
      const m = JSON.parse(payload.toString());
      if (m.route?.operation === 'hello') helloNonces.push(m.content.nonce);
      else if (topic.startsWith('ai/inferencemodel/edge-a/')) delivered.push({ topic, keyId: m.signature?.keyId, nonce: m.content?.nonce });
    });
    await watcher.subscribeAsync(['ai/inferencemodel/edge-a/#', 'default/ai/inferencemodel-status/edge-a'], { qos: 1 });
    const transport = kubeedgeTransport({ routerUrl: router.url, ruleNamespace: 'default', receiverPort, receiverHost: '127.0.0.1', log: silentLogger() });
    const { controller } = await startController(api, { transport, options: { retryBaseMs: 100, signingKey: privateKeyFromPem(pair.privatePem) } });
    cleanups.push(() => controller.stop());

    agent = startAgentProcess(
      {
        node: { name: 'edge-a' },
        broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000, ackTimeoutMs: 60_000 },
        stateDir: join(work, 'edge-a', 'state'),
        security: { trustedKeys: [publicFile] },
        log: { level: 'debug' },
      },
      ['--no-serve'],
    );
    api.create(TYPES.inferencemodels, model('m', { manifest: [{ version: '1', downloadURL: server.urlFor('/1.tar.gz'), sha256sum: server.sha256 }], targetVersion: '1' }));
    await until(() => api.get(TYPES.inferencemodels, 'default', 'm')?.status?.phases?.Installed === 1, 'm installed on edge-a, status through the Router');
    expect(router.posts.some((p) => p.topic === 'ai/inferencemodel/edge-a/default/m' && p.status === 200)).toBe(true);
    expect(delivered.filter((d) => d.topic === 'ai/inferencemodel/edge-a/default/m').map((d) => d.keyId)).toContain(pair.keyId);
    expect(delivered.filter((d) => d.topic !== 'ai/inferencemodel/edge-a/_agent').every((d) => d.keyId === pair.keyId)).toBe(true);
    // The sync that answers the agent's hello echoes its nonce (the controller remembers it per node).
    expect(helloNonces.length).toBeGreaterThan(0);
    await until(() => delivered.some((d) => d.topic === 'ai/inferencemodel/edge-a/_sync' && d.nonce === helloNonces.at(-1)), 'a sync echoing the hello nonce');
    // The controller's acks are signed too: the agent takes them (its outbox drains), and refuses nothing.
    await until(() => agent!.logs.some((l) => l.msg === 'statuses acked by the controller'), 'a signed ack accepted');
    expect(agent.logs.filter((l) => /refused/.test(String(l.msg)))).toEqual([]);
  });
});
