import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { haveAgent, printLogTails, startAgent, startFileServer, type RealAgent } from './agents.js';
import { TYPES, node, startApi, startController, tempDir, until } from './harness.js';
import { WAIT_MS } from '../helpers/wait.js';

// End to end with REAL agents (`modeld run`, child processes) on two nodes with different
// labels, one mosquitto, the controller in-process against the fake API server.

if (!haveAgent) console.warn('agent/cli/index.ts is missing: the end-to-end test with real agents is skipped');

let api: FakeKubeApi;
let broker: Broker;
let dir: ReturnType<typeof tempDir>;
let files: Awaited<ReturnType<typeof startFileServer>> | undefined;
let filesUrl = '';
let stopController: (() => Promise<void>) | undefined;
const agents: RealAgent[] = [];
const archives: Record<string, { sha256: string }> = {};

const im = () => api.get(TYPES.inferencemodels, 'default', 'lin');
const nodeStatus = (n: string) => im()?.status?.nodes?.find((x: any) => x.node === n);
const modelReady = (n: string) => agents.find((x) => x.name === n)!.ready('linear');

beforeAll(async () => {
  if (!haveAgent) return;
  api = await startApi();
  broker = await startMosquitto();
  dir = tempDir('modeld-e2e-');
  for (const [v, w] of [['1', 2], ['2', 3]] as const) archives[v] = await makeModelArchive(join(dir.path, 'www', `linear-${v}.tar.gz`), { w, b: 0 });
  files = await startFileServer(join(dir.path, 'www'));
  filesUrl = files.url;
  api.create(TYPES.nodes, node('edge-a', { zone: 'a' }));
  api.create(TYPES.nodes, node('edge-b', { zone: 'b' }));
  const { controller } = await startController(api, { brokerUrl: broker.url, options: { statusIntervalMs: 100 } });
  stopController = () => controller.stop();
  agents.push(...(await Promise.all([['edge-a', 'a'], ['edge-b', 'b']].map(([name, zone]) => startAgent({ name, labels: { zone }, brokerUrl: broker.url, dir: dir.path })))));
});

afterAll(async () => {
  // A graceful stop (it stops its runtimes); whatever is still running after it is killed.
  await Promise.all(agents.map((a) => a.stop()));
  await stopController?.();
  await files?.close();
  await broker?.close();
  await api?.stop();
  dir?.cleanup();
});

describe.skipIf(!haveAgent)('controller with real agents', () => {
  it('serves on the selected node, follows targetVersion, moves on relabel, and goes on delete', async () => {
    try {
      api.create(TYPES.inferencemodels, {
        apiVersion: 'ai.kubeedge.io/v1alpha1',
        kind: 'InferenceModel',
        metadata: { name: 'lin', namespace: 'default' },
        spec: {
          modelName: 'linear',
          deployToLayer: 'edge',
          frameworkType: 'onnx',
          nodeSelector: { zone: 'a' },
          manifest: ['1', '2'].map((v) => ({ version: v, downloadURL: `${filesUrl}/linear-${v}.tar.gz`, sha256sum: archives[v].sha256 })),
          targetVersion: '1',
        },
      });
      // edge-a is the one target: the resource's counts say what it serves (it lists no node doing well).
      await until(() => im()?.status?.phases?.Serving === 1 && im()?.status?.servingVersion === '1', 'edge-a serving version 1', 90_000);
      await until(() => im()?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True', 'Ready=True', WAIT_MS);
      expect(im().status).toMatchObject({ readyNodes: 1, targetNodes: 1, servingVersion: '1' });
      expect(await modelReady('edge-a')).toBe(200);
      expect(nodeStatus('edge-b')).toBeUndefined();
      expect(await modelReady('edge-b')).toBe(404);

      api.patch(TYPES.inferencemodels, 'default', 'lin', { spec: { targetVersion: '2' } });
      await until(() => im()?.status?.servingVersion === '2' && im()?.status?.versions?.[0]?.nodes === 1, 'edge-a serving version 2', 90_000);
      expect(im().status).toMatchObject({ serving: '2', phase: 'Ready', versions: [{ version: '2', nodes: 1 }], nodes: [] });
      expect(im().status.observedGeneration).toBe(2);

      // Relabel the Node: it no longer matches, the model is removed there. (The agent also checks
      // the selector against its own configured labels, so a node is only moved *onto* when
      // its agent's labels agree; here it only leaves.)
      api.patch(TYPES.nodes, undefined, 'edge-a', { metadata: { labels: { zone: 'c' } } });
      await until(async () => (await modelReady('edge-a')) === 404, 'model removed from edge-a', 60_000);
      await until(() => !nodeStatus('edge-a') && im()?.status?.targetNodes === 0, 'edge-a gone from status', WAIT_MS);
      expect(im().status.conditions.find((c: any) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NoTargetNodes' });

      // Back on edge-a, then delete the resource: gone everywhere.
      api.patch(TYPES.nodes, undefined, 'edge-a', { metadata: { labels: { zone: 'a' } } });
      await until(async () => (await modelReady('edge-a')) === 200, 'serving again on edge-a', 90_000);
      api.remove(TYPES.inferencemodels, 'default', 'lin');
      await until(async () => (await modelReady('edge-a')) === 404, 'model removed from edge-a after delete', 60_000);
      expect(await modelReady('edge-b')).toBe(404);
    } catch (err) {
      printLogTails(agents);
      throw err;
    }
  }, 300_000);
});
