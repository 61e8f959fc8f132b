import { existsSync, mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { TYPES, node, startApi, startController, tempDir, until } from './harness.js';

// Guarantee 10: a node never removes what it serves because the cloud does not know it. A typo in
// node.name (or a new hostname where the name defaults to it) makes the agent say hello as a node
// the cluster has no Node for; the controller's answer used to be an empty sync, and the agent
// deleted every model. Real agent (child process), real mosquitto, the controller in-process
// against the fake API server.

let api: FakeKubeApi;
let broker: Broker;
let dir: ReturnType<typeof tempDir>;
let server: ChaosServer;
let stopController: (() => Promise<void>) | undefined;
let agent: AgentProcess | undefined;

const stateDir = () => join(dir.path, 'state');

function startAgent(name: string): AgentProcess {
  return startAgentProcess(
    { node: { name, layer: 'edge' }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir: stateDir(), admin: { metricsPort: 0 }, fetch: { backoffBaseMs: 50, backoffMaxMs: 500 }, log: { level: 'debug' } },
    ['--no-serve'],
  );
}

beforeEach(async () => {
  api = await startApi();
  broker = await startMosquitto();
  dir = tempDir('modeld-unknown-node-');
  const src = join(dir.path, 'src');
  await makeTree(src, { 'version.txt': '1' });
  mkdirSync(join(dir.path, 'www'));
  server = await startChaosServer({ body: readFileSync(await packDir(src, join(dir.path, 'www', 'm.tgz'), { gzip: true })) });
  api.create(TYPES.nodes, node('edge-a'));
  const { controller } = await startController(api, { brokerUrl: broker.url, options: { statusIntervalMs: 100 } });
  stopController = () => controller.stop();
});

afterEach(async () => {
  await agent?.end();
  agent = undefined;
  await stopController?.();
  await server.stop();
  await broker.close();
  await api.stop();
  dir.cleanup();
});

describe('a node the cluster does not know', { timeout: 180_000 }, () => {
  it('keeps serving what it has when renamed by mistake, and the controller records a Warning Event naming it', async () => {
    api.create(TYPES.inferencemodels, {
      apiVersion: 'ai.kubeedge.io/v1alpha1',
      kind: 'InferenceModel',
      metadata: { name: 'lin', namespace: 'default' },
      spec: { modelName: 'lin', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: server.urlFor('/m.tgz'), sha256sum: server.sha256 }], targetVersion: '1' },
    });
    agent = startAgent('edge-a');
    const current = join(stateDir(), 'models', 'default', 'lin', 'current');
    await until(() => api.get(TYPES.inferencemodels, 'default', 'lin')?.status?.phases?.Installed === 1, 'edge-a installed lin', 90_000);
    expect(readlinkSync(current)).toBe(`versions/1@${server.sha256}`);

    // The same node, its name mistyped.
    await agent.kill('SIGTERM');
    agent = startAgent('edge-aa');
    await until(() => agent!.logs.some((l) => l.msg === 'message' && l.op === 'sync'), 'the controller to answer the hello with a sync', 60_000);
    // What a removal would have done by now (it is one step after the sync), or not.
    await until(() => !existsSync(current) || agent!.logs.some((l) => l.msg === 'the controller does not know this node: nothing is removed'), 'the agent to act on the sync', 60_000);
    expect(existsSync(join(current, 'version.txt'))).toBe(true);
    expect(agent.child.exitCode).toBeNull();

    const event = await until(() => api.list(TYPES.events).find((e: any) => e.reason === 'UnknownNode'), 'an UnknownNode Event', 30_000);
    expect(event).toMatchObject({ type: 'Warning', involvedObject: { kind: 'Node', name: 'edge-aa' }, reportingComponent: 'modeld-controller' });
    expect(event.message).toContain('edge-aa');
  });
});
