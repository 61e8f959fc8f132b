import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
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
      return /resnet\s+resnet50\s+2\s+1\/1/.test(out) && out;
    }, 'kubectl get im showing 1/1', 30_000);
    expect(table).toMatch(/NAME\s+MODEL\s+TARGET\s+READY\s+AGE/);
    const ready = await kubectl('get', 'im', 'resnet', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}');
    expect(ready).toBe('True');
    // kubectl rejects what the CRD schema forbids, before the controller sees it.
    await expect(kubectl('patch', 'im', 'resnet', '--type=merge', '-p', '{"spec":{"deployToLayer":"fog"}}')).rejects.toThrow(/Unsupported value/);
    await kubectl('delete', 'im', 'resnet');
    await cam.waitFor((n) => !n.held.has('default/resnet'), WAIT_MS, 'resnet removed');
    expect(other.everHeld.size).toBe(0);
  });

  it('shuts down gracefully on SIGTERM and releases the Lease', async () => {
    controller!.child.kill('SIGTERM');
    expect((await controller!.exited).code).toBe(0);
    expect(api.get(TYPES.leases, 'kube-system', 'modeld-controller').spec.holderIdentity).toBe('');
    expect(logs).toContain('stopped');
  });
});
