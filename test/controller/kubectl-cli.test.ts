import { execFile, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { SimNode } from '../fakes/sim-node.js';
import { TYPES, node, startApi, tempDir, until } from './harness.js';
import { WAIT_MS } from '../helpers/wait.js';

// As a user would: the controller as a child process (controller/main.ts), kubectl against the
// fake API server. kubectl needs --validate=false: the fake serves no OpenAPI document.

const exec = promisify(execFile);
const kubectlPath = spawnSync('sh', ['-c', 'command -v kubectl']).stdout?.toString().trim();
const root = new URL('../..', import.meta.url).pathname;

let api: FakeKubeApi;
let broker: Broker;
let dir: ReturnType<typeof tempDir>;
let kubeconfig: string;
let controller: ProcessTree | undefined;
let logs = '';
let metricsPort = 0;
const sims: SimNode[] = [];

if (!kubectlPath) console.warn('kubectl not found on PATH: the kubectl tests are skipped (install kubectl to run them)');

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await exec(kubectlPath!, ['--kubeconfig', kubeconfig, '--cache-dir', join(dir.path, 'cache'), ...args], { timeout: 60_000 });
  return stdout;
}

beforeAll(async () => {
  api = await startApi();
  broker = await startMosquitto();
  dir = tempDir();
  kubeconfig = api.writeKubeconfig(join(dir.path, 'kubeconfig'));
  api.create(TYPES.nodes, node('cam-1', { 'modeld.kubeedge.io/camera': 'true' }));
  api.create(TYPES.nodes, node('other-1'));
  metricsPort = await freePort();
  controller = spawnTree(
    process.execPath,
    ['--import', 'tsx', 'controller/main.ts', '--kubeconfig', kubeconfig, '--broker-url', broker.url, '--metrics-port', String(metricsPort), '--lease-namespace', 'kube-system', '--identity', 'test-1', '--status-interval', '100'],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  controller.child.stdout!.on('data', (d) => (logs += d));
  controller.child.stderr!.on('data', (d) => (logs += d));
  sims.push(await new SimNode({ node: 'cam-1', brokerUrl: broker.url }).start());
  sims.push(await new SimNode({ node: 'other-1', brokerUrl: broker.url }).start());
  await until(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok, 'controller /healthz', 60_000);
});

afterAll(async () => {
  if (process.env.SHOW_LOGS) console.log(logs);
  await controller?.end();
  for (const s of sims) await s.stop();
  await broker?.close();
  await api?.stop();
  dir?.cleanup();
});

describe('modeld-controller as a process', () => {
  it('prints --help with every option', async () => {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', 'controller/main.ts', '--help'], { cwd: root });
    for (const flag of ['--kubeconfig', '--transport', '--broker-url', '--topic-prefix', '--status-topic', '--router-url', '--rule-namespace', '--receiver-port', '--edge-label', '--sync-interval', '--status-interval', '--require-digest', '--metrics-port', '--lease-name', '--lease-namespace', '--identity']) {
      expect(stdout).toContain(flag);
    }
  });

  it('takes the Lease and serves /metrics', async () => {
    await until(() => api.get(TYPES.leases, 'kube-system', 'modeld-controller')?.spec.holderIdentity === 'test-1', 'lease held');
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toContain('modeld_controller_leader 1');
  });

  it.skipIf(!kubectlPath)('kubectl apply, patch and get im drive the nodes and show their status', async () => {
    await kubectl('apply', '--validate=false', '-f', join(root, 'deploy/examples/inferencemodel-agents.yaml'));
    const [cam, other] = sims;
    await cam.waitFor((n) => n.held.get('default/resnet')?.spec.targetVersion === '1', WAIT_MS, 'resnet v1 on cam-1');
    await kubectl('patch', 'im', 'resnet', '--type=merge', '-p', '{"spec":{"targetVersion":"2"}}');
    await cam.waitFor((n) => n.held.get('default/resnet')?.spec.targetVersion === '2', WAIT_MS, 'resnet v2 on cam-1');
    await cam.report({ namespace: 'default', name: 'resnet', observedGeneration: 2, phase: 'Serving', servingVersion: '2', targetVersion: '2' });
    const table = await until(async () => {
      const out = await kubectl('get', 'im');
      return /resnet\s+2\s+2\s+1\/1\s+Ready\s/.test(out) && out;
    }, 'kubectl get im showing 1/1', 30_000);
    expect(table).toMatch(/NAME\s+TARGET\s+SERVING\s+READY\s+PHASE\s+AGE/);
    expect(await kubectl('get', 'im', '-o', 'wide')).toMatch(/NAME\s+TARGET\s+SERVING\s+READY\s+PHASE\s+MODEL\s+AGE\n.*resnet50/);
    const ready = await kubectl('get', 'im', 'resnet', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}');
    expect(ready).toBe('True');
    // kubectl rejects what the CRD schema forbids, before the controller sees it.
    await expect(kubectl('patch', 'im', 'resnet', '--type=merge', '-p', '{"spec":{"deployToLayer":"fog"}}')).rejects.toThrow(/Unsupported value/);
    await kubectl('delete', 'im', 'resnet');
    await cam.waitFor((n) => !n.held.has('default/resnet'), WAIT_MS, 'resnet removed');
    expect(other.everHeld.size).toBe(0);
  });

  it.skipIf(!kubectlPath)('after a broken v3, kubectl get im says the node serves 2 and describe and events show why', async () => {
    const [cam] = sims;
    const manifest = ['1', '2', '3'].map((v) => ({ version: v, downloadURL: `https://models.example.com/linear/${v}.tar.gz` }));
    writeFileSync(join(dir.path, 'linear.yaml'), stringify({ apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', metadata: { name: 'linear', namespace: 'default' }, spec: { modelName: 'linear-model', deployToLayer: 'edge', nodeSelector: { 'modeld.kubeedge.io/camera': 'true' }, manifest, targetVersion: '2' } }));
    await kubectl('apply', '--validate=false', '-f', join(dir.path, 'linear.yaml'));
    await cam.waitFor((n) => n.held.get('default/linear')?.spec.targetVersion === '2', WAIT_MS, 'linear v2 on cam-1');
    await cam.report({ namespace: 'default', name: 'linear', observedGeneration: 1, phase: 'Serving', servingVersion: '2', targetVersion: '2' });
    await until(async () => /linear\s+2\s+2\s+1\/1\s+Ready/.test(await kubectl('get', 'im', 'linear')), 'linear Ready on 2', 30_000);
    await kubectl('patch', 'im', 'linear', '--type=merge', '-p', '{"spec":{"targetVersion":"3"}}');
    await cam.waitFor((n) => n.held.get('default/linear')?.spec.targetVersion === '3', WAIT_MS, 'linear v3 on cam-1');
    await cam.report({ namespace: 'default', name: 'linear', observedGeneration: 2, phase: 'Failed', servingVersion: '2', targetVersion: '3', reason: 'ChecksumMismatch', message: 'sha256 of 3.tar.gz does not match' });
    // The issue's row was `linear linear-model 3 <blank> 0/1`: the node serves 2, and it says so.
    const row = await until(async () => {
      const out = await kubectl('get', 'im', 'linear');
      return /linear\s+3\s+2\s+0\/1\s+Degraded\s/.test(out) && out;
    }, 'kubectl get im linear: serving 2, Degraded', 30_000);
    expect(row).toMatch(/NAME\s+TARGET\s+SERVING\s+READY\s+PHASE\s+AGE/);
    const described = await until(async () => {
      const out = await kubectl('describe', 'im', 'linear');
      return /Events:\s*\n\s+Type\s+Reason\s+Age\s+From\s+Message/.test(out) && out;
    }, 'kubectl describe im linear with events', 30_000);
    expect(described).toMatch(/Warning\s+NodeFailed\s+\S+\s+modeld-controller\s+node cam-1 failed version 3: ChecksumMismatch: sha256 of 3.tar.gz does not match/);
    expect(described).toMatch(/Phase:\s+Degraded/);
    expect(await kubectl('events', '--for', 'inferencemodel/linear')).toMatch(/Warning\s+NodeFailed\s+InferenceModel\/linear\s+node cam-1 failed version 3/);
    // Every node's detail, off the resource: the controller's own endpoint.
    const detail = (await (await fetch(`http://127.0.0.1:${metricsPort}/status/default/linear`)).json()) as { nodes: Array<{ node: string; phase: string; servingVersion?: string; message?: string }> };
    expect(detail.nodes).toEqual([expect.objectContaining({ node: 'cam-1', phase: 'Failed', servingVersion: '2', message: 'sha256 of 3.tar.gz does not match' })]);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/status/default/nope`)).status).toBe(404);
    await kubectl('delete', 'im', 'linear');
  });

  it.skipIf(!kubectlPath)('a staged rollout\'s steps and its abort are lines in kubectl describe im and kubectl events', async () => {
    const [cam] = sims;
    const manifest = ['1', '2'].map((v) => ({ version: v, downloadURL: `https://models.example.com/staged/${v}.tar.gz` }));
    const spec = { modelName: 'staged-model', deployToLayer: 'edge', nodeSelector: { 'modeld.kubeedge.io/camera': 'true' }, manifest, targetVersion: '1', rollout: { failureThreshold: { count: 1 } } };
    writeFileSync(join(dir.path, 'staged.yaml'), stringify({ apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', metadata: { name: 'staged', namespace: 'default' }, spec }));
    await kubectl('apply', '--validate=false', '-f', join(dir.path, 'staged.yaml'));
    await cam.waitFor((n) => n.held.get('default/staged')?.spec.targetVersion === '1', WAIT_MS, 'staged v1 on cam-1');
    await cam.report({ namespace: 'default', name: 'staged', observedGeneration: 1, phase: 'Serving', servingVersion: '1', targetVersion: '1' });
    await until(async () => /Normal\s+RolloutComplete/.test(await kubectl('events', '--for', 'inferencemodel/staged')), 'RolloutComplete in kubectl events', 30_000);
    await kubectl('patch', 'im', 'staged', '--type=merge', '-p', '{"spec":{"targetVersion":"2"}}');
    await cam.waitFor((n) => n.held.get('default/staged')?.spec.targetVersion === '2', WAIT_MS, 'staged v2 on cam-1');
    await cam.report({ namespace: 'default', name: 'staged', observedGeneration: 2, phase: 'Failed', servingVersion: '1', targetVersion: '2', reason: 'ChecksumMismatch' });
    const described = await until(async () => {
      const out = await kubectl('describe', 'im', 'staged');
      return /Warning\s+RolloutAborted/.test(out) && out;
    }, 'kubectl describe im staged with RolloutAborted', 30_000);
    expect(described).toMatch(/Normal\s+RolloutStarted\s+\S+\s+modeld-controller\s+rollout \w+ started: version 1 in 1 batch\n/);
    expect(described).toMatch(/Normal\s+RolloutComplete\s+\S+\s+modeld-controller\s+rollout \w+ complete: 1 on every node, 1 batch done/);
    expect(described).toMatch(/Normal\s+RolloutStarted\s+\S+\s+modeld-controller\s+rollout \w+ started: 1 -> 2 in 1 batch\n/);
    expect(described).toMatch(/Warning\s+RolloutAborted\s+\S+\s+modeld-controller\s+FailureThresholdExceeded: 1 of 1 nodes of batch 1\/1 failed \(threshold 1\); nodes not reached keep 1/);
    expect(await kubectl('events', '--for', 'inferencemodel/staged', '--types', 'Warning')).toMatch(/Warning\s+RolloutAborted\s+InferenceModel\/staged\s+FailureThresholdExceeded/);
    await kubectl('delete', 'im', 'staged');
  });

  it.skipIf(!kubectlPath)('kubectl apply is refused by the CRD\'s CEL rules: a targetVersion not in the manifest, a duplicate version, a malformed digest', async () => {
    const apply = (name: string, spec: Record<string, unknown>) => {
      const file = join(dir.path, `${name}.yaml`);
      writeFileSync(file, stringify({ apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', metadata: { name, namespace: 'default' }, spec: { modelName: 'm', deployToLayer: 'edge', ...spec } }));
      return kubectl('apply', '--validate=false', '-f', file);
    };
    const v = (version: string, sha256sum?: string) => ({ version, downloadURL: `https://models.example.com/m/${version}.tar.gz`, ...(sha256sum ? { sha256sum } : {}) });
    await expect(apply('bad-target', { manifest: [v('1'), v('2')], targetVersion: '7' })).rejects.toThrow(
      /The InferenceModel "bad-target" is invalid: spec: Invalid value: "object": targetVersion must be one of the manifest's versions/,
    );
    await expect(apply('dup-version', { manifest: [v('1'), v('1')], targetVersion: '1' })).rejects.toThrow(/spec.manifest: Invalid value: "array": manifest versions must be unique/);
    await expect(apply('bad-digest', { manifest: [v('1', 'abc123')], targetVersion: '1' })).rejects.toThrow(/spec.manifest\[0\].sha256sum: Invalid value: "string": sha256sum must be 64 hexadecimal digits/);
    // An update is checked too: patching in a missing version is refused, the stored one stays.
    await apply('good', { manifest: [v('1')], targetVersion: '1' });
    await expect(kubectl('patch', 'im', 'good', '--type=merge', '-p', '{"spec":{"targetVersion":"9"}}')).rejects.toThrow(/targetVersion must be one of the manifest's versions/);
    expect(api.get(TYPES.inferencemodels, 'default', 'good').spec.targetVersion).toBe('1');
    for (const name of ['bad-target', 'dup-version', 'bad-digest']) expect(api.get(TYPES.inferencemodels, 'default', name)).toBeUndefined();
    await kubectl('delete', 'im', 'good');
  });

  it('shuts down gracefully on SIGTERM and releases the Lease', async () => {
    controller!.child.kill('SIGTERM');
    expect((await controller!.exited).code).toBe(0);
    expect(api.get(TYPES.leases, 'kube-system', 'modeld-controller').spec.holderIdentity).toBe('');
    expect(logs).toContain('stopped');
  });
});
