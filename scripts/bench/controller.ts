import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { buildCrd } from '../../controller/crd.js';
import { DEFAULT_EDGE_LABEL } from '../../controller/placement.js';
import { DEFAULT_STATUS_TOPIC, DEFAULT_TOPIC_PREFIX, makeEnvelope, statusTopic, type StatusContent } from '../../shared/index.js';
import { TYPES, startFakeKubeApi, type FakeKubeApi } from '../../test/fakes/kube-api/server.js';
import { FakeKubeEdgeRouter } from '../../test/fakes/kubeedge-router.js';
import { startLinkNode, type LinkNode } from '../../test/helpers/link-node.js';
import { startMosquitto, type Broker } from '../../test/helpers/mosquitto.js';
import { freePort } from '../../test/helpers/ports.js';
import { sleep, until } from './poll.js';
import { seededRandom } from '../../test/helpers/fault-server.js';
import { connectFleet, endFleet, registerFleet } from './sim-fleet.js';
import { median } from './stats.js';

// `npm run bench -- controller`: modeld-controller (a child process, mqtt transport) against the
// fake API server and a loopback mosquitto, with 1,000 simulated nodes (MQTT clients in this
// process). Figures:
//  - fanout: one resource change (targetVersion) -> every one of 1,000 nodes has it (median of runs)
//  - ingest: node status reports per second the controller takes in, with coalesced status writes
//  - rss: the controller's resident memory with 1,000 nodes and 100 resources
//  - lostStatuses: kubeedge transport through the fake Router, which drops 5% of messages (both
//    ways, seeded); two controller processes with leader election, the leader SIGKILLed in the
//    middle (the standby takes over once the Lease expires); 50 nodes running the agent's real link
//    and durable outbox each send 20 statuses. A status "reached the resource" when the resource
//    shows it or a later one of the same node; lostStatuses counts those that never did.

const NODES = 1000;
const RESOURCES = 100;
const root = fileURLToPath(new URL('../..', import.meta.url));

interface SimNodes {
  clients: MqttClient[];
  /** node index -> generation of the bench resource it holds */
  generation: Int32Array;
  reports: number;
}

async function connectNodes(brokerUrl: string, key: string): Promise<SimNodes> {
  const generation = new Int32Array(NODES);
  const clients = await connectFleet({ brokerUrl, count: NODES, clientPrefix: 'bench-', key, onSpec: (i, content) => (generation[i] = content.metadata.generation ?? 0) });
  return { clients, generation, reports: 0 };
}

async function metric(port: number, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + (labels ? `{${labels}}` : ' ')) || (labels && l.startsWith(`${name}{${labels}}`)));
  return line ? Number(line.split(' ').pop()) : 0;
}

function rssBytes(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : NaN;
}

function spec(i: number, selector: Record<string, string>, targetVersion = '1') {
  const sha = 'ab'.repeat(32);
  return {
    apiVersion: 'ai.kubeedge.io/v1alpha1',
    kind: 'InferenceModel',
    metadata: { name: `model-${i}`, namespace: 'default' },
    spec: {
      modelName: `model-${i}`,
      deployToLayer: 'edge',
      frameworkType: 'onnx',
      nodeSelector: selector,
      manifest: [
        { version: '1', downloadURL: `https://models.example.com/m${i}/1.tgz`, sha256sum: sha },
        { version: '2', downloadURL: `https://models.example.com/m${i}/2.tgz`, sha256sum: sha },
      ],
      targetVersion,
    },
  };
}

/**
 * Compiles controller/ and shared/ to JavaScript under node_modules/.cache (so that node_modules
 * resolves), so that the RSS measured is the controller's and not the TypeScript loader's.
 */
function compileController(): string {
  const out = join(root, 'node_modules/.cache/modeld-bench');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  writeFileSync(
    join(out, 'tsconfig.json'),
    JSON.stringify({ extends: join(root, 'tsconfig.json'), compilerOptions: { outDir: out, rootDir: root, sourceMap: false, typeRoots: [join(root, 'node_modules/@types')] }, include: [join(root, 'controller/**/*.ts'), join(root, 'shared/**/*.ts')] }),
  );
  const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(out, 'tsconfig.json')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`compiling the controller failed:\n${r.stdout}${r.stderr}`);
  // The real path: a symlinked node_modules would make main.js think it is not the entry point.
  return realpathSync(join(out, 'controller/main.js'));
}

const LOST_NODES = 50;
const LOST_STATUSES_PER_NODE = 20;
const DROP_RATE = 0.05;

async function lostStatuses(api: FakeKubeApi, main: string, dir: string, log: (s: string) => void) {
  api.create('/v1/namespaces', { metadata: { name: 'kubeedge' } });
  const names = Array.from({ length: LOST_NODES }, (_, i) => `lost-node-${i}`);
  for (const n of names) api.create(TYPES.nodes, { metadata: { name: n, labels: { [DEFAULT_EDGE_LABEL]: '', lost: 'yes' } } });
  api.create(TYPES.inferencemodels, { ...spec(999, { lost: 'yes' }), metadata: { name: 'lost-0', namespace: 'default' } });
  const broker = await startMosquitto();
  const receiverPort = await freePort();
  const random = seededRandom(13);
  const router = await new FakeKubeEdgeRouter({
    nodes: Object.fromEntries(names.map((n) => [n, broker.url])),
    restRules: [{ ruleNamespace: 'default', path: `/${DEFAULT_TOPIC_PREFIX}`, topic: DEFAULT_TOPIC_PREFIX }],
    eventbusRules: names.map((n) => ({ node: n, ruleNamespace: 'default', topic: `ai/inferencemodel-status/${n}`, resource: `http://127.0.0.1:${receiverPort}/status` })),
    drop: () => random() < DROP_RATE,
  }).start();
  const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig-lost'));
  const children: ChildProcess[] = [];
  let ending = false;
  let restarts = 0;
  // Two replicas of a Deployment: a replica that exits (killed, or its lease lost) is started again.
  const ports = new Map<string, number>();
  const spawnCtl = async (identity: string): Promise<ChildProcess> => {
    const port = await freePort();
    ports.set(identity, port);
    const c = spawn(
      process.execPath,
      [main, '--kubeconfig', kubeconfig, '--transport', 'kubeedge', '--router-url', router.url, '--receiver-port', String(receiverPort), '--metrics-port', String(port), '--metrics-bind', '127.0.0.1', '--identity', identity, '--lease-namespace', 'kubeedge', '--status-interval', '200', '--sync-interval', '3600', '--log-level', 'error'],
      { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    children.push(c);
    c.once('exit', () => {
      if (ending) return;
      restarts++;
      // As a replacement pod: a new name, so the Lease changes hands (standby or newcomer).
      setTimeout(() => void (!ending && spawnCtl(`${identity.split('~')[0]}~${restarts}`)), 1000).unref();
    });
    return c;
  };
  const lease = () => api.get(TYPES.leases, 'kubeedge', 'modeld-controller')?.spec as { holderIdentity?: string; renewTime?: string } | undefined;
  const holder = () => lease()?.holderIdentity;
  const nodes: LinkNode[] = [];
  try {
    const a = await spawnCtl('ctl-a');
    await until(() => holder() === 'ctl-a', 'ctl-a leading', 60_000, 20);
    await spawnCtl('ctl-b');
    for (const n of names) nodes.push(startLinkNode({ node: n, brokerUrl: broker.url, ackTimeoutMs: 1000, ackMaxDelayMs: 4000, dir: mkdtempSync(join(dir, 'node-')), noFsync: true }));
    await until(() => nodes.every((n) => n.link.connected), 'every node connected', 60_000, 20);
    const t0 = performance.now();
    let killedAt = 0;
    let killedAtWall = 0;
    for (let k = 1; k <= LOST_STATUSES_PER_NODE; k++) {
      for (const n of nodes) {
        n.report({ namespace: 'default', name: 'lost-0', observedGeneration: 1, phase: k === LOST_STATUSES_PER_NODE ? 'Serving' : 'Downloading', servingVersion: k === LOST_STATUSES_PER_NODE ? '1' : undefined, message: `s-${k}` });
      }
      if (k === LOST_STATUSES_PER_NODE / 2) {
        killedAtWall = Date.now();
        a.kill('SIGKILL'); // the leader dies with whatever it had not written yet
        killedAt = performance.now();
      }
      await sleep(100);
    }
    // A live leader again: the standby or the replacement replica, once the dead leader's Lease
    // expired (15 s). The dead one renews nothing.
    await until(() => Date.parse(lease()?.renewTime ?? '') > killedAtWall + 1000, 'a live leader after the kill', 120_000, 50);
    const tookOver = performance.now() - killedAt;
    const settled = await until(() => nodes.every((n) => n.store.outbox.depth() === 0), 'every status acked', 120_000, 100).then(
      () => true,
      () => false,
    );
    await sleep(500);
    // The resource lists only nodes needing attention: each node's last report is read from the
    // leader's GET /status/<namespace>/<name> (what it holds and has written), and the resource's
    // readyNodes must agree (every last status is Serving).
    const detail = await fetch(`http://127.0.0.1:${ports.get(holder() ?? '')}/status/default/lost-0`).then((r) => (r.ok ? r.json() : { nodes: [] }), () => ({ nodes: [] }));
    const entries = (detail as { nodes: Array<{ node: string; message?: string }> }).nodes;
    let lost = 0;
    for (const n of names) {
      const shown = Number(entries.find((e) => e.node === n)?.message?.slice(2) ?? 0);
      lost += LOST_STATUSES_PER_NODE - (Number.isFinite(shown) ? shown : 0);
    }
    const result = {
      lostStatuses: lost,
      lostStatusesSent: LOST_NODES * LOST_STATUSES_PER_NODE,
      lostStatusesDropped: router.dropped,
      lostStatusesAllAcked: settled,
      lostStatusesLeaderTakeoverMs: Math.round(tookOver),
      lostStatusesNewLeader: holder(),
      lostStatusesControllerRestarts: restarts,
      lostStatusesSettleMs: Math.round(performance.now() - t0),
      lostStatusesReadyInResource: api.get(TYPES.inferencemodels, 'default', 'lost-0')?.status?.readyNodes ?? 0,
    };
    log(`  lostStatuses: ${lost} of ${result.lostStatusesSent} (Router dropped ${router.dropped.up} up, ${router.dropped.down} down; leader SIGKILLed, ${result.lostStatusesNewLeader} leading again after ${result.lostStatusesLeaderTakeoverMs} ms, ${restarts} replica restarts)`);
    return result;
  } finally {
    ending = true;
    await Promise.all(nodes.map((n) => n.stop()));
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    }
    await router.stop();
    await broker.close();
  }
}

export async function benchController(opts: { json: boolean; runs: number }): Promise<Record<string, unknown>> {
  const log = (s: string) => !opts.json && console.log(s);
  const runs = Math.max(1, opts.runs);
  const dir = mkdtempSync(join(tmpdir(), 'bench-ctl-'));
  let api: FakeKubeApi | undefined;
  let broker: Broker | undefined;
  let child: ChildProcess | undefined;
  let sims: SimNodes | undefined;
  try {
    api = await startFakeKubeApi({ maxEvents: 2000 });
    api.create(TYPES.crds, buildCrd());
    broker = await startMosquitto();
    // Every node is an edge node; "group" spreads the 99 background resources over the nodes.
    registerFleet(api, NODES, (i) => ({ bench: 'yes', group: `g${i % 10}` }));
    // 99 background resources, each on a tenth of the nodes, and the measured one on all 1,000.
    for (let i = 1; i < RESOURCES; i++) api.create(TYPES.inferencemodels, spec(i, { group: `g${i % 10}` }));
    api.create(TYPES.inferencemodels, spec(0, { bench: 'yes' }));
    const key = 'default/model-0';
    log(`controller bench: ${NODES} simulated nodes, ${RESOURCES} resources, loopback mosquitto, fake API server`);
    sims = await connectNodes(broker.url, key);

    const main = compileController();
    const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
    const metricsPort = await freePort();
    child = spawn(
      process.execPath,
      [main, '--kubeconfig', kubeconfig, '--broker-url', broker.url, '--no-leader-elect', '--metrics-port', String(metricsPort), '--status-interval', '500', '--sync-interval', '3600', '--log-level', 'warn'],
      { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const pid = child.pid!;
    // The controller's first full sync reaches every node.
    await until(() => sims!.generation.every((g) => g === 1), 'the first sync on every node');

    // 1. Fan-out of one change.
    const fanout: number[] = [];
    for (let r = 0; r < runs; r++) {
      const before = api.get(TYPES.inferencemodels, 'default', 'model-0').metadata.generation;
      const t0 = performance.now();
      api.patch(TYPES.inferencemodels, 'default', 'model-0', { spec: { targetVersion: before % 2 ? '2' : '1' } });
      await until(() => sims!.generation.every((g) => g === before + 1), `fan-out run ${r + 1}`);
      fanout.push(performance.now() - t0);
      log(`  fan-out run ${r + 1}: ${fanout[r].toFixed(1)} ms`);
    }
    const rssFanout = rssBytes(pid);

    // 2. Status ingest: every node reports on the measured resource, REPORTS_PER_NODE times.
    const REPORTS_PER_NODE = 20;
    const total = NODES * REPORTS_PER_NODE;
    const gen = api.get(TYPES.inferencemodels, 'default', 'model-0').metadata.generation;
    const acceptedBefore = await metric(metricsPort, 'modeld_controller_inbound_total', 'result="accepted"');
    const writesBefore = api.requests.filter((q) => q.method === 'PATCH' && q.path.endsWith('/model-0/status')).length;
    const t0 = performance.now();
    for (let k = 0; k < REPORTS_PER_NODE; k++) {
      await Promise.all(
        sims.clients.map((c, i) => {
          const content: StatusContent = {
            node: `node-${i}`,
            namespace: 'default',
            name: 'model-0',
            observedGeneration: gen,
            phase: k === REPORTS_PER_NODE - 1 ? 'Serving' : 'Downloading',
            servingVersion: k === REPORTS_PER_NODE - 1 ? (gen % 2 ? '1' : '2') : undefined,
            progress: { bytes: k * 1000, totalBytes: REPORTS_PER_NODE * 1000 },
            time: new Date().toISOString(),
          };
          const env = makeEnvelope('status', content, { source: `node-${i}`, resource: 'default/inferencemodel/model-0' });
          return c.publishAsync(statusTopic(DEFAULT_STATUS_TOPIC, `node-${i}`), JSON.stringify(env), { qos: 1 });
        }),
      );
    }
    await until(async () => (await metric(metricsPort, 'modeld_controller_inbound_total', 'result="accepted"')) - acceptedBefore >= total, 'every status report accepted', 300_000, 50); // polling /metrics costs the controller CPU: not too often
    const ingestSec = (performance.now() - t0) / 1000;
    await until(() => api!.get(TYPES.inferencemodels, 'default', 'model-0')?.status?.readyNodes === NODES, 'the final status written', 60_000);
    const statusWrites = api.requests.filter((q) => q.method === 'PATCH' && q.path.endsWith('/model-0/status')).length - writesBefore;
    const ingestPerSec = total / ingestSec;
    log(`  status ingest: ${total} reports in ${ingestSec.toFixed(2)} s = ${Math.round(ingestPerSec)}/s, ${statusWrites} status writes`);

    // 3. Memory.
    await sleep(1000);
    const rss = rssBytes(pid);
    // 4. Statuses lost through a dropping Router and a leader change (this controller is done).
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await endFleet(sims.clients);
    sims = undefined;
    const lost = await lostStatuses(api, main, dir, log);
    const result = {
      bench: 'controller',
      nodes: NODES,
      resources: RESOURCES,
      runs,
      fanoutMs: fanout.map((x) => Math.round(x * 10) / 10),
      fanoutMedianMs: Math.round(median(fanout) * 10) / 10,
      fanoutTargetMs: 1000,
      statusReports: total,
      statusIngestPerSec: Math.round(ingestPerSec),
      statusIngestTargetPerSec: 5000,
      statusWrites,
      controllerRssMiB: Math.round((rss / 2 ** 20) * 10) / 10,
      controllerRssAfterFanoutMiB: Math.round((rssFanout / 2 ** 20) * 10) / 10,
      ...lost,
      note: 'controller compiled to JS and run by node; about 77 MiB of its RSS is loading @kubernetes/client-node',
    };
    log(`  fan-out median: ${result.fanoutMedianMs} ms (target < 1000 ms)`);
    log(`  status ingest: ${result.statusIngestPerSec}/s (target >= 5000/s)`);
    log(`  controller RSS at ${NODES} nodes and ${RESOURCES} resources: ${result.controllerRssMiB} MiB`);
    return result;
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child!.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    if (sims) await endFleet(sims.clients);
    await broker?.close();
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const json = process.argv.includes('--json');
  const runsArg = process.argv.find((a) => a.startsWith('--runs='));
  benchController({ json, runs: runsArg ? Number(runsArg.slice(7)) : 5 }).then(
    (r) => {
      if (json) console.log(JSON.stringify(r));
      process.exit(0);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
