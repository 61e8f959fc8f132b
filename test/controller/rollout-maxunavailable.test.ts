import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rolloutBatches } from '../../controller/rollout/membership.js';
import type { RolloutSpec } from '../../shared/index.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { SimNode } from '../fakes/sim-node.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { TYPES, model, node, startApi, startController, until } from './harness.js';

// spec.rollout.maxUnavailable end to end: the real controller against the fake API server and a
// real mosquitto, with simulated nodes that report Downloading as soon as they are sent a new
// version and Serving it only when the test releases them. After every message any node receives,
// the fleet is counted: never more than maxUnavailable nodes hold version 2 without serving it.

let api: FakeKubeApi;
let broker: Broker;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
const KEY = 'default/m';

beforeEach(async () => {
  api = await startApi();
  broker = await startMosquitto();
  cleanups.push(() => api.stop(), () => broker.close());
});

afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

interface GatedFleet {
  names: string[];
  /** nodes holding a version they do not serve yet, waiting for release() */
  waiting(): string[];
  release(n: string): Promise<void>;
  /** nodes that report Failed on version 2 (and keep serving 1) */
  failing: Set<string>;
  /** the most nodes ever holding 2 while not serving it and not Failed on it */
  maxInFlight: number;
  /** node -> versions it was sent, in order */
  log: Map<string, string[]>;
}

async function gatedFleet(count: number): Promise<GatedFleet> {
  const names = Array.from({ length: count }, (_, i) => `edge-${String(i).padStart(2, '0')}`);
  const sims = new Map<string, SimNode>();
  const serving = new Map<string, string | undefined>();
  const failed = new Set<string>();
  const held = (n: string) => sims.get(n)?.held.get(KEY)?.spec.targetVersion;
  const generation = (n: string) => sims.get(n)!.held.get(KEY)!.metadata.generation ?? 0;
  const f: GatedFleet = {
    names,
    failing: new Set(),
    maxInFlight: 0,
    log: new Map(names.map((n) => [n, []])),
    waiting: () => names.filter((n) => held(n) !== undefined && held(n) !== serving.get(n) && !failed.has(n)),
    async release(n) {
      const v = held(n);
      serving.set(n, v);
      await sims.get(n)!.report({ namespace: 'default', name: 'm', observedGeneration: generation(n), targetVersion: v, phase: 'Serving', servingVersion: v });
    },
  };
  const count2 = () => names.filter((n) => held(n) === '2' && serving.get(n) !== '2' && !failed.has(n)).length;
  for (const name of names) {
    api.create(TYPES.nodes, node(name));
    const sim = new SimNode({ node: name, brokerUrl: broker.url });
    sims.set(name, sim);
    await sim.start(false);
    sim.client.on('message', () => {
      const m = sim.received.at(-1);
      if (!m || !['update', 'sync'].includes(m.route.operation)) return;
      const v = held(name);
      if (v === undefined) return;
      f.log.get(name)!.push(v);
      if (v !== '2') failed.delete(name);
      f.maxInFlight = Math.max(f.maxInFlight, count2());
      const base = { namespace: 'default', name: 'm', observedGeneration: generation(name), targetVersion: v };
      // The first version a node gets it serves at once (the fleet starts on 1).
      if (serving.get(name) === undefined) serving.set(name, v);
      if (v === serving.get(name)) void sim.report({ ...base, phase: 'Serving', servingVersion: v });
      else if (v === '2' && f.failing.has(name)) {
        failed.add(name);
        void sim.report({ ...base, phase: 'Failed', servingVersion: serving.get(name), reason: 'VerifyFailed' });
      } else void sim.report({ ...base, phase: 'Downloading', servingVersion: serving.get(name) });
    });
    await sim.hello();
    cleanups.push(() => sim.stop());
  }
  return f;
}

async function controller() {
  const c = await startController(api, { brokerUrl: broker.url });
  cleanups.push(() => c.controller.stop());
  return c.controller;
}

const get = () => api.get(TYPES.inferencemodels, 'default', 'm');
const rolloutStatus = () => get()?.status?.rollout;

describe('staged rollout with maxUnavailable over mqtt', () => {
  it('keeps at most maxUnavailable nodes of a batch updating at once, across a controller restart, and a failed node holds no slot', async () => {
    const f = await gatedFleet(8);
    let ctl = await controller();
    const rollout: RolloutSpec = { canary: { count: 2 }, maxUnavailable: 2 };
    api.create(TYPES.inferencemodels, model('m'));
    await until(() => get()?.status?.servingVersion === '1', 'every node serving 1');
    const batches = rolloutBatches(get().metadata.uid as string, f.names, rollout);
    // maxUnavailable does not split the batch: the canary, then the 6 others in one batch.
    expect(batches.map((b) => b.length)).toEqual([2, 6]);
    f.failing.add(batches[1][0]);
    api.patch(TYPES.inferencemodels, 'default', 'm', { spec: { targetVersion: '2', rollout } });
    let released = 0;
    let restarted = false;
    const allOn2 = () => f.names.every((n) => f.log.get(n)!.at(-1) === '2');
    for (;;) {
      // Event-driven: the next node waiting to be released, or none once every node holds 2.
      const waiting = await until(() => (f.waiting().length ? f.waiting() : allOn2() ? [] : undefined), 'a node waiting');
      if (!waiting.length) break;
      if (released === 3 && !restarted) {
        // The canary and one node of batch 2 serve 2; the failed node holds no slot, so two others
        // are in flight. A new controller carries on from status.rollout.
        await until(() => f.waiting().length === 2 && f.waiting().every((n) => batches[1].includes(n)), 'two nodes of batch 2 in flight');
        await until(() => rolloutStatus()?.batch === 2 && rolloutStatus()?.batchInFlight === 2 && rolloutStatus()?.message?.includes('2 in flight (maxUnavailable 2)'), 'status shows 2 in flight');
        await ctl.stop();
        ctl = await controller();
        restarted = true;
        continue;
      }
      await f.release(waiting[0]);
      released++;
    }
    const done = await until(() => rolloutStatus()?.state === 'Complete' && rolloutStatus(), 'rollout complete');
    expect(done).toMatchObject({ batches: 2, batch: 2, fromVersion: '1', toVersion: '2' });
    expect(restarted).toBe(true);
    expect(f.maxInFlight).toBe(2);
    // A node that served 2 was never sent 1 again (the restart did not disturb it), except the failed one, which never served 2.
    for (const n of f.names) {
      const log = f.log.get(n)!;
      const first2 = log.indexOf('2');
      expect(first2).toBeGreaterThan(-1);
      expect(log.slice(first2).every((v) => v === '2')).toBe(true);
    }
  });
});
