import { KubeConfig } from '@kubernetes/client-node';
import type { MqttClient } from 'mqtt';
import { silentLogger } from '../../agent/log.js';
import { Controller } from '../../controller/controller.js';
import { buildCrd } from '../../controller/crd.js';
import { kubeRest } from '../../controller/kube/rest.js';
import { createMetrics } from '../../controller/metrics.js';
import { DEFAULT_EDGE_LABEL } from '../../controller/placement.js';
import { rolloutBatches } from '../../controller/rollout/membership.js';
import { aggregateStatus } from '../../controller/status/aggregate.js';
import { mqttTransport } from '../../controller/transport/mqtt.js';
import {
  DEFAULT_STATUS_TOPIC,
  DEFAULT_TOPIC_PREFIX,
  makeEnvelope,
  statusTopic,
  type RolloutSpec,
  type StatusContent,
} from '../../shared/index.js';
import { TYPES, startFakeKubeApi, type FakeKubeApi } from '../../test/fakes/kube-api/server.js';
import { startMosquitto, type Broker } from '../../test/helpers/mosquitto.js';
import { until } from './poll.js';
import { seededRandom } from '../../test/helpers/fault-server.js';
import { connectFleet, endFleet, registerFleet, type FleetSpec } from './sim-fleet.js';
import { median } from './stats.js';

// `npm run bench -- rollout`: a staged rollout (10% batches) over 1,000 simulated nodes on a
// loopback mosquitto, the controller in this process against the fake API server. Each simulated
// node answers a new version like an agent: Downloading after 20-80 ms, then Serving (or Failed,
// for the nodes that fail that version) 150-600 ms after the spec arrived (seeded delays: a small
// model fetched and started on a loopback network). Figures (medians of the runs):
//  - rolloutMs: the first batch's first spec sent -> the last node reporting Serving (2% of nodes
//    fail each good version; threshold 10% per batch, so the rollout completes)
//  - completeMs: the same start -> status.rollout Complete written
//  - abortMs: a bad version that 30% of nodes fail: the report that crosses the batch's threshold
//    sent by its node -> status.rollout Aborted written
//  - apiWritesPerNode: API writes (status patches, events) during the good rollout, per node
//  - statusBytes10k: JSON size of aggregateStatus for 10,000 nodes reporting Serving

const NODES = 1000;
const KEY = 'default/bench-rollout';
const GOOD_FAIL = 0.02;
const BAD_FAIL = 0.3;
const ROLLOUT: RolloutSpec = { batch: { percent: 10 }, failureThreshold: { percent: 10 } };

/** Whether `node` fails `version` (a stable function of both). */
function fails(node: number, version: string): boolean {
  if (version === '1') return false; // the version every node starts from
  const rate = version.startsWith('bad') ? BAD_FAIL : GOOD_FAIL;
  return seededRandom(node * 7919 + [...version].reduce((a, c) => a * 31 + c.charCodeAt(0), 7))() < rate;
}

interface Responder {
  clients: MqttClient[];
  /** node -> version it last reported Serving */
  serving: string[];
  /** performance.now() of the first spec of a version arriving anywhere */
  firstSeen: Map<string, number>;
  /** version -> node -> performance.now() of its final report */
  done: Map<string, Map<number, { at: number; failed: boolean }>>;
  /** node -> the version it was last sent, and when it last reported Serving or Failed */
  held: Array<string | undefined>;
  lastFinal: Float64Array;
}

async function responders(brokerUrl: string): Promise<Responder> {
  const r: Responder = { clients: [], serving: [], firstSeen: new Map(), done: new Map(), held: [], lastFinal: new Float64Array(NODES) };
  const random = seededRandom(12);
  const held = r.held;
  const onSpec = (i: number, content: FleetSpec, sync: boolean, c: MqttClient) => {
    const name = `node-${i}`;
    const report = (st: Omit<StatusContent, 'node' | 'namespace' | 'name' | 'time'>) => {
      const env = makeEnvelope('status', { node: name, namespace: 'default', name: 'bench-rollout', time: new Date().toISOString(), ...st }, { source: name, resource: 'default/inferencemodel/bench-rollout' });
      void c.publishAsync(statusTopic(DEFAULT_STATUS_TOPIC, name), JSON.stringify(env), { qos: 1 });
    };
    const v = content.spec.targetVersion!;
    const generation = content.metadata.generation ?? 0;
    if (held[i] === v) {
      if (sync || r.serving[i] === v) report({ observedGeneration: generation, phase: 'Serving', servingVersion: r.serving[i], targetVersion: v });
      return;
    }
    held[i] = v;
    if (!r.firstSeen.has(v)) r.firstSeen.set(v, performance.now());
    const failing = fails(i, v);
    let final = false;
    setTimeout(() => !final && held[i] === v && report({ observedGeneration: generation, phase: 'Downloading', servingVersion: r.serving[i], targetVersion: v }), 20 + random() * 60);
    setTimeout(() => {
      if (held[i] !== v) return;
      final = true;
      if (failing) report({ observedGeneration: generation, phase: 'Failed', servingVersion: r.serving[i], targetVersion: v, reason: 'VerifyFailed', message: 'sha256 mismatch' });
      else {
        r.serving[i] = v;
        report({ observedGeneration: generation, phase: 'Serving', servingVersion: v, targetVersion: v });
      }
      let m = r.done.get(v);
      if (!m) r.done.set(v, (m = new Map()));
      m.set(i, { at: performance.now(), failed: failing });
      r.lastFinal[i] = performance.now();
    }, 150 + random() * 450);
  };
  r.clients = await connectFleet({ brokerUrl, count: NODES, clientPrefix: 'bench-rollout-', key: KEY, onSpec });
  return r;
}

function resource(versions: string[]) {
  return {
    apiVersion: 'ai.kubeedge.io/v1alpha1',
    kind: 'InferenceModel',
    metadata: { name: 'bench-rollout', namespace: 'default' },
    spec: {
      modelName: 'bench-rollout',
      deployToLayer: 'edge',
      frameworkType: 'onnx',
      manifest: versions.map((v) => ({ version: v, downloadURL: `https://models.example.com/r/${v}.tgz`, sha256sum: 'ab'.repeat(32) })),
      targetVersion: '1',
    },
  };
}

/** aggregateStatus for 10,000 nodes reporting Serving: the size of the resource's status. */
function statusBytes10k(): number {
  const targets = Array.from({ length: 10_000 }, (_, i) => `node-${String(i).padStart(5, '0')}`);
  const now = new Date().toISOString();
  const reports = new Map<string, StatusContent>(targets.map((n) => [n, { node: n, namespace: 'default', name: 'm', observedGeneration: 2, phase: 'Serving', targetVersion: '2', servingVersion: '2', url: `http://${n}:8080/v2/models/m`, time: now }]));
  const spec = { ...resource(['1', '2']).spec, targetVersion: '2', deployToLayer: 'edge' as const };
  const status = aggregateStatus({ generation: 2, spec, targets, reports, now, rollout: { revision: '0123456789abcdef', state: 'Complete', batch: 10, batches: 10, fromVersion: '1', toVersion: '2', reason: 'RolloutComplete', message: '10 batches done' } });
  return Buffer.byteLength(JSON.stringify({ status }));
}

export async function benchRollout(opts: { json: boolean; runs: number }): Promise<Record<string, unknown>> {
  const log = (s: string) => (opts.json ? console.error(s) : console.log(s));
  const runs = Math.max(1, opts.runs);
  let api: FakeKubeApi | undefined;
  let broker: Broker | undefined;
  let ctl: Controller | undefined;
  let sims: Responder | undefined;
  try {
    api = await startFakeKubeApi({ maxEvents: 5000 });
    api.create(TYPES.crds, buildCrd());
    broker = await startMosquitto();
    registerFleet(api, NODES);
    const versions = ['1', ...Array.from({ length: runs }, (_, r) => [`good-${r}`, `bad-${r}`]).flat()];
    api.create(TYPES.inferencemodels, resource(versions));
    log(`rollout bench: ${NODES} simulated nodes (reports 20-80 ms Downloading, 150-600 ms Serving/Failed; ${GOOD_FAIL * 100}% fail a good version, ${BAD_FAIL * 100}% a bad one), 10% batches, threshold 10%`);
    sims = await responders(broker.url);
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 'fake', server: api.url, skipTLSVerify: true }], users: [{ name: 'fake' }], contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }], currentContext: 'fake' });
    const logger = silentLogger();
    const transport = mqttTransport({ brokerUrl: broker.url, clientId: `bench-rollout-ctl-${process.pid}`, topicPrefix: DEFAULT_TOPIC_PREFIX, statusTopic: DEFAULT_STATUS_TOPIC, log: logger });
    ctl = new Controller(
      { topicPrefix: DEFAULT_TOPIC_PREFIX, statusTopic: DEFAULT_STATUS_TOPIC, edgeLabel: DEFAULT_EDGE_LABEL, requireDigest: false, syncIntervalMs: 3_600_000, statusIntervalMs: 500 },
      { kc, rest: kubeRest(kc), transport, log: logger, metrics: createMetrics() },
    );
    await ctl.start();
    const get = () => api!.get(TYPES.inferencemodels, 'default', 'bench-rollout');
    await until(() => get()?.status?.servingVersion === '1', 'every node serving 1', 60_000, 50).catch((err) => {
      const { nodes, ...status } = get()?.status ?? {};
      throw new Error(`${(err as Error).message}: status ${JSON.stringify(status).slice(0, 600)}, nodes ${JSON.stringify(nodes?.filter((e: { phase: string }) => e.phase !== "Serving"))}, ${sims!.done.get('1')?.size ?? 0} nodes reported a final status`);
    });
    const uid = get().metadata.uid as string;
    const batches = rolloutBatches(uid, Array.from({ length: NODES }, (_, i) => `node-${i}`), ROLLOUT);
    const index = new Map(batches.flatMap((b, k) => b.map((n) => [Number(n.slice(5)), k] as const)));
    const writes = () => api!.requests.filter((q) => q.method !== 'GET').length;

    const rolloutMs: number[] = [];
    const completeMs: number[] = [];
    const abortMs: number[] = [];
    const writesPerNode: number[] = [];
    for (let r = 0; r < runs; r++) {
      // A good version, in 10% batches.
      const good = `good-${r}`;
      const w0 = writes();
      api.patch(TYPES.inferencemodels, 'default', 'bench-rollout', { spec: { targetVersion: good, rollout: ROLLOUT } });
      await until(() => get()?.status?.rollout?.toVersion === good && ['Complete', 'Aborted'].includes(get()?.status?.rollout?.state), `rollout ${good} done`, 300_000, 20);
      const completeAt = performance.now();
      const state = get().status.rollout;
      if (state.state !== 'Complete') throw new Error(`bench: rollout ${good} ended ${state.state}: ${state.message}`);
      const done = sims.done.get(good)!;
      const start = sims.firstSeen.get(good)!;
      const lastServing = Math.max(...[...done.values()].filter((d) => !d.failed).map((d) => d.at));
      rolloutMs.push(lastServing - start);
      completeMs.push(completeAt - start);
      writesPerNode.push((writes() - w0) / NODES);
      log(`  run ${r + 1}: ${good} on every node in ${(lastServing - start).toFixed(0)} ms (status Complete at ${(completeAt - start).toFixed(0)} ms, ${done.size - [...done.values()].filter((d) => d.failed).length} serving, ${[...done.values()].filter((d) => d.failed).length} failed)`);
      // A bad version: 30% of nodes fail it; the threshold of batch 1 is crossed at its 10th failure.
      const bad = `bad-${r}`;
      api.patch(TYPES.inferencemodels, 'default', 'bench-rollout', { spec: { targetVersion: bad } });
      const first = batches[0].length;
      const limit = Math.ceil((first * 10) / 100);
      let crossedAt = 0;
      await until(() => {
        const failures = [...(sims!.done.get(bad)?.entries() ?? [])].filter(([n, d]) => d.failed && index.get(n) === 0).map(([, d]) => d.at).sort((a, b) => a - b);
        if (failures.length >= limit) crossedAt = failures[limit - 1];
        return failures.length >= limit;
      }, `threshold crossed for ${bad}`, 120_000, 2);
      await until(() => get()?.status?.rollout?.toVersion === bad && get()?.status?.rollout?.state === 'Aborted', `abort of ${bad} written`, 60_000, 2);
      abortMs.push(performance.now() - crossedAt);
      log(`  run ${r + 1}: ${bad} aborted ${abortMs[r].toFixed(0)} ms after the threshold was crossed (${get().status.rollout.message})`);
      // Failed nodes roll back to what they served: wait for them before the next run.
      await until(() => [...(sims!.done.get(bad)?.entries() ?? [])].every(([n, d]) => !d.failed || (sims!.held[n] !== bad && sims!.lastFinal[n] > d.at)), `rollback after ${bad}`, 120_000, 20);
    }
    const bytes = statusBytes10k();
    const round = (x: number) => Math.round(x * 10) / 10;
    const result = {
      bench: 'rollout',
      nodes: NODES,
      runs,
      batches: batches.length,
      responderDelays: 'Downloading 20-80 ms, Serving/Failed 150-600 ms after the spec arrives (seeded); 2% fail a good version, 30% a bad one',
      rolloutMs: round(median(rolloutMs)),
      rolloutRunsMs: rolloutMs.map(round),
      completeMs: round(median(completeMs)),
      abortMs: round(median(abortMs)),
      abortRunsMs: abortMs.map(round),
      apiWritesPerNode: Math.round(median(writesPerNode) * 1000) / 1000,
      statusBytes10k: bytes,
      note: 'controller in the bench process (tsx), sharing its event loop with the 1,000 simulated nodes; status writes at most every 500 ms',
    };
    log(`  rolloutMs ${result.rolloutMs}, abortMs ${result.abortMs}, apiWritesPerNode ${result.apiWritesPerNode}, statusBytes10k ${bytes}`);
    return result;
  } finally {
    await ctl?.stop();
    if (sims) await endFleet(sims.clients);
    await broker?.close();
    await api?.stop();
  }
}
