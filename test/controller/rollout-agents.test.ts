import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rolloutBatches } from '../../controller/rollout/membership.js';
import type { RolloutSpec } from '../../shared/index.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { haveAgent, printLogTails, startAgent, startFileServer, type RealAgent } from './agents.js';
import { TYPES, node, startApi, startController, tempDir, until } from './harness.js';

// Staged rollouts with REAL agents (`modeld run` child processes serving a real onnx model), one
// mosquitto, the controller in-process against the fake API server. A node's local hold
// (`modeld defer`, its CLI on its admin socket) pauses its batch until it is released; a version
// whose archive fails its sha256 check on the node aborts the rollout and the node serves the
// version it had. What serves is checked by inference through each node's gateway.

if (!haveAgent) console.warn('agent/cli/index.ts is missing: the rollout test with real agents is skipped');
const exec = promisify(execFile);
const kubectlPath = spawnSync('sh', ['-c', 'command -v kubectl']).stdout?.toString().trim();

const NAMES = ['edge-a', 'edge-b', 'edge-c'];
/** y at x = 10 of each version's linear model; v3's archive never verifies. */
const Y = { '1': 21, '2': 29 } as const;
const ROLLOUT: RolloutSpec = { canary: { count: 1 }, batch: { count: 1 } };

let api: FakeKubeApi;
let broker: Broker;
let dir: ReturnType<typeof tempDir>;
let files: Awaited<ReturnType<typeof startFileServer>> | undefined;
let stopController: (() => Promise<void>) | undefined;
let kubeconfig = '';
const agents: RealAgent[] = [];
const manifest: Array<{ version: string; downloadURL: string; sha256sum: string }> = [];
/** The batches of every rollout of the resource (fixed by its uid and the node names). */
let batches: string[][] = [];

const im = () => api.get(TYPES.inferencemodels, 'default', 'linear');
const rollout = () => im()?.status?.rollout;
const agent = (n: string) => agents.find((a) => a.name === n)!;
const y = (n: string) => agent(n).infer('linear', 10);
const local = async (n: string) => JSON.parse((await agent(n).cli('status', 'linear', '-o', 'json')).stdout || '{}').models?.[0] as Record<string, any> | undefined;
/** The agent's own log of default/linear at `version` (its JSON lines): what it was sent, and when. */
const logOf = (n: string, version: string) =>
  agent(n)
    .logs.join('')
    .split('\n')
    .flatMap((l) => {
      try {
        const e = JSON.parse(l);
        return e.model === 'default/linear' && e.version === version ? [e as { time: number; phase?: string; reason?: string }] : [];
      } catch {
        return [];
      }
    });
const waitRollout = (state: string, batch: number, reason: string, toVersion: string) =>
  until(() => {
    const r = rollout();
    return r?.toVersion === toVersion && r.state === state && r.batch === batch && r.reason === reason && r;
  }, `rollout to ${toVersion} ${state} in batch ${batch} (${reason})`, 120_000);
const allServe = (v: keyof typeof Y) => until(async () => (await Promise.all(NAMES.map(y))).every((x) => x === Y[v]), `every node answering as version ${v}`, 120_000);
const kubectl = async (...args: string[]) => (await exec(kubectlPath!, ['--kubeconfig', kubeconfig, '--cache-dir', join(dir.path, 'kubectl-cache'), ...args], { timeout: 60_000 })).stdout;

beforeAll(async () => {
  if (!haveAgent) return;
  api = await startApi();
  broker = await startMosquitto();
  dir = tempDir('modeld-rollout-agents-');
  kubeconfig = api.writeKubeconfig(join(dir.path, 'kubeconfig'));
  const www = join(dir.path, 'www');
  files = await startFileServer(www);
  const a1 = await makeModelArchive(join(www, 'linear-1.tar.gz'), { w: 2, b: 1 });
  const a2 = await makeModelArchive(join(www, 'linear-2.tar.gz'), { w: 3, b: -1 });
  await makeModelArchive(join(www, 'linear-3.tar.gz'), { w: 4, b: 0 });
  // v3 names a digest that is not its archive's (nor any blob a node holds, which it would reuse
  // without a download): the node downloads it and refuses it (DigestMismatch).
  const wrong = createHash('sha256').update('not the archive of v3').digest('hex');
  for (const [v, sha] of [['1', a1.sha256], ['2', a2.sha256], ['3', wrong]]) manifest.push({ version: v, downloadURL: `${files.url}/linear-${v}.tar.gz`, sha256sum: sha });
  for (const n of NAMES) api.create(TYPES.nodes, node(n));
  const { controller } = await startController(api, { brokerUrl: broker.url, options: { statusIntervalMs: 100 } });
  stopController = () => controller.stop();
  const config = { serving: { startTimeoutMs: 120_000, drainTimeoutMs: 2000, stopGraceMs: 2000, probeIntervalMs: 200 }, deferral: { maxSeconds: 3600 } };
  agents.push(...(await Promise.all(NAMES.map((name) => startAgent({ name, brokerUrl: broker.url, dir: dir.path, config })))));
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await stopController?.();
  await files?.close();
  await broker?.close();
  await api?.stop();
  dir?.cleanup();
});

describe.skipIf(!haveAgent)('staged rollout with real agents', { timeout: 300_000 }, () => {
  it('a node holding the update with `modeld defer` pauses its batch (NodesDeferred); released, the rollout goes on to Complete', async () => {
    try {
      api.create(TYPES.inferencemodels, {
        apiVersion: 'ai.kubeedge.io/v1alpha1',
        kind: 'InferenceModel',
        metadata: { name: 'linear', namespace: 'default' },
        spec: { modelName: 'linear', deployToLayer: 'edge', frameworkType: 'onnx', manifest: manifest.slice(0, 2), targetVersion: '1', rollout: ROLLOUT },
      });
      await waitRollout('Complete', 3, 'RolloutComplete', '1');
      await allServe('1');
      batches = rolloutBatches(im().metadata.uid, NAMES, ROLLOUT);
      expect(batches.map((b) => b.length)).toEqual([1, 1, 1]);
      const [[held], [second], [third]] = batches;

      // The node of batch 1 holds the next update, by its own CLI on its admin socket.
      const d = await agent(held).cli('defer', 'linear', '--for', '1h');
      expect(d, d.stderr).toMatchObject({ code: 0 });
      api.patch(TYPES.inferencemodels, 'default', 'linear', { spec: { targetVersion: '2' } });
      const paused = await waitRollout('Paused', 1, 'NodesDeferred', '2');
      expect(paused).toMatchObject({ fromVersion: '1', batches: 3, batchNodes: 1, batchDeferred: 1, batchServing: 0 });
      expect(paused.message).toContain('waits only on 1 deferred node');
      // The held node's report: v2 installed, its switch held; the resource lists it with its deadline.
      const entry = await until(() => im()?.status?.nodes?.find((e: any) => e.node === held && e.phase === 'Deferred' && e.targetVersion === '2'), `${held} listed Deferred`);
      expect(Date.parse(entry.deferredUntil)).toBeGreaterThan(Date.now());
      expect(entry).toMatchObject({ servingVersion: '1', reason: 'UpdateDeferred' });
      // Every node still answers as v1: the held one by its hold, the others by the pause.
      for (const n of NAMES) expect(await y(n)).toBe(Y['1']);
      for (const n of [second, third]) {
        expect(await local(n)).toMatchObject({ phase: 'Serving', targetVersion: '1', servingVersion: '1' });
        expect(logOf(n, '2')).toEqual([]); // never sent 2 yet
      }
      // What the printer columns read (TARGET SERVING READY PHASE).
      expect(im().status).toMatchObject({ phase: 'Paused', serving: '1', ready: '0/3', phases: { Serving: 2, Deferred: 1 } });
      expect(im().status.conditions.find((c: any) => c.type === 'Progressing')).toMatchObject({ status: 'Unknown', reason: 'NodesDeferred' });
      if (kubectlPath) expect(await kubectl('get', 'im', 'linear')).toMatch(/\nlinear\s+2\s+1\s+0\/3\s+Paused\s/);

      const r = await agent(held).cli('defer', '--release', 'linear');
      expect(r, r.stderr).toMatchObject({ code: 0 });
      const done = await waitRollout('Complete', 3, 'RolloutComplete', '2');
      expect(done).toMatchObject({ fromVersion: '1', batches: 3 });
      await allServe('2');
      // Batch after batch, by the agents' own logs: a batch's node is sent 2 once the one before serves it.
      const servedAt = (n: string) => logOf(n, '2').find((e) => e.phase === 'Serving')!.time;
      expect(logOf(second, '2')[0].time).toBeGreaterThanOrEqual(servedAt(held));
      expect(logOf(third, '2')[0].time).toBeGreaterThanOrEqual(servedAt(second));
      await until(() => im()?.status?.servingVersion === '2' && im()?.status?.phase === 'Ready', 'resource Ready on 2');
      expect(im().status).toMatchObject({ ready: '3/3', nodes: [] });
      if (kubectlPath) expect(await kubectl('get', 'im', 'linear')).toMatch(/\nlinear\s+2\s+2\s+3\/3\s+Ready\s/);
    } catch (err) {
      printLogTails(agents);
      throw err;
    }
  });

  it('a version whose archive fails its sha256 check on the canary aborts the rollout; the canary serves 2 again, the others keep 2', async () => {
    try {
      expect(batches.length).toBe(3); // the first case left every node serving 2
      const [[canary], ...rest] = batches;
      api.patch(TYPES.inferencemodels, 'default', 'linear', { spec: { manifest, targetVersion: '3', rollout: { failureThreshold: { count: 1 } } } });
      const aborted = await waitRollout('Aborted', 1, 'FailureThresholdExceeded', '3');
      expect(aborted).toMatchObject({ fromVersion: '2', batchFailed: 1 });
      expect(aborted.message).toContain('1 of 1 nodes of batch 1/3 failed (threshold 1)');
      // The canary is sent back 2 and says so; none is left Failed.
      const back = await until(async () => {
        const m = await local(canary);
        return m?.phase === 'Serving' && m.targetVersion === '2' ? m : undefined;
      }, `${canary} sent 2 again and serving it`, 120_000);
      expect(back.servingVersion).toBe('2');
      expect(logOf(canary, '3')).toContainEqual(expect.objectContaining({ phase: 'Failed', reason: 'DigestMismatch' }));
      await until(() => im()?.status?.versions?.[0]?.nodes === 3 && im().status.versions[0].version === '2' && !im().status.phases?.Failed, 'every node counted serving 2, none Failed');
      await allServe('2');
      expect(im().status.phase).toBe('Aborted');
      // The nodes not reached were never sent 3 (nothing in their logs about it).
      for (const [n] of rest) {
        expect(await local(n)).toMatchObject({ phase: 'Serving', targetVersion: '2', servingVersion: '2' });
        expect(logOf(n, '3')).toEqual([]);
      }
      if (kubectlPath) expect(await kubectl('get', 'im', 'linear')).toMatch(/\nlinear\s+3\s+2\s+0\/3\s+Aborted\s/);
    } catch (err) {
      printLogTails(agents);
      throw err;
    }
  });
});
