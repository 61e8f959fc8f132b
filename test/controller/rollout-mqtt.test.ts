import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import type { Controller } from '../../controller/controller.js';
import { LeaderElector } from '../../controller/kube/lease.js';
import { kubeRest } from '../../controller/kube/rest.js';
import { rolloutBatches } from '../../controller/rollout/membership.js';
import type { RolloutSpec } from '../../shared/index.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { SimNode } from '../fakes/sim-node.js';
import type { Broker } from '../helpers/mosquitto.js';
import { TYPES, kubeConfigFor, model, node, perTestApiAndBroker, startController, until } from './harness.js';

// Staged rollouts end to end: the real controller against the fake API server and a real
// mosquitto, with simulated nodes that answer every spec with a status (Serving the version they
// were sent, or Failed for the versions a test makes fail on them). Orders are checked on the log
// of what each node received and reported, never on timings.

let api: FakeKubeApi;
let broker: Broker;
const cleanups = perTestApiAndBroker((a, b) => ([api, broker] = [a, b]));
const KEY = 'default/m';

interface Fleet {
  names: string[];
  nodes: Map<string, SimNode>;
  /** node -> versions that fail there */
  failing: Map<string, Set<string>>;
  /** what each node was sent, in arrival order across the fleet */
  log: Array<{ node: string; version: string | undefined }>;
  version(node: string): string | undefined;
}

/** Nodes that report like an agent: Serving the version they hold, or Failed (keeping the version they served). */
async function fleet(count: number): Promise<Fleet> {
  const names = Array.from({ length: count }, (_, i) => `edge-${String(i).padStart(2, '0')}`);
  const f: Fleet = { names, nodes: new Map(), failing: new Map(), log: [], version: (n) => f.nodes.get(n)!.held.get(KEY)?.spec.targetVersion };
  for (const name of names) {
    api.create(TYPES.nodes, node(name));
    const sim = new SimNode({ node: name, brokerUrl: broker.url });
    let serving: string | undefined;
    sim.start = ((orig) => async (hello?: boolean) => {
      const r = await orig(false);
      r.client.on('message', () => {
        const m = sim.received.at(-1);
        if (!m || !['update', 'sync'].includes(m.route.operation)) return;
        const held = sim.held.get(KEY);
        if (!held) return;
        const v = held.spec.targetVersion;
        f.log.push({ node: name, version: v });
        const fail = f.failing.get(name)?.has(v ?? '');
        if (!fail) serving = v;
        void sim.report({ namespace: 'default', name: 'm', observedGeneration: held.metadata.generation ?? 0, targetVersion: v, ...(fail ? { phase: 'Failed', servingVersion: serving, reason: 'VerifyFailed' } : { phase: 'Serving', servingVersion: v }) });
      });
      if (hello !== false) await sim.hello();
      return r;
    })(sim.start.bind(sim)) as SimNode['start'];
    await sim.start();
    cleanups.push(() => sim.stop());
    f.nodes.set(name, sim);
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
const patchRollout = (rollout: Record<string, unknown>, extra: Record<string, unknown> = {}) => api.patch(TYPES.inferencemodels, 'default', 'm', { spec: { ...extra, rollout } });

/** A resource serving version 1 on every node (no rollout yet), and its batches for a rollout spec. */
async function servingV1(f: Fleet, rollout: RolloutSpec) {
  api.create(TYPES.inferencemodels, model('m'));
  await until(() => get()?.status?.servingVersion === '1', 'every node serving 1');
  const uid = get().metadata.uid as string;
  return rolloutBatches(uid, f.names, rollout);
}

/** The Events the controller wrote about the resource (events.k8s.io/v1), as "Type Reason: note". */
const events = () =>
  api
    .list(TYPES.eventsV1)
    .filter((e: any) => e.regarding?.kind === 'InferenceModel' && e.regarding.name === 'm')
    .map((e: any) => `${e.type} ${e.reason}: ${e.note}`);
const count = (reason: string) => events().filter((e) => e.split(':')[0].endsWith(` ${reason}`)).length;
const waitEvent = (re: RegExp) => until(() => events().find((e) => re.test(e)), `an Event ${re}`);

const waitState = (state: string, batch?: number, reason?: string) =>
  until(() => {
    const r = rolloutStatus();
    return r?.state === state && (batch === undefined || r.batch === batch) && (reason === undefined || r.reason === reason) && r;
  }, `rollout ${state} ${batch ?? ''} ${reason ?? ''}`);

describe('staged rollout over mqtt', () => {
  it('sends the canary first, then batch after batch, each only once the one before serves', async () => {
    const f = await fleet(10);
    await controller();
    const rollout: RolloutSpec = { canary: { count: 2 }, batch: { count: 4 } };
    const batches = await servingV1(f, rollout);
    expect(batches.map((b) => b.length)).toEqual([2, 4, 4]);
    f.log.length = 0;
    patchRollout(rollout, { targetVersion: '2' });
    const done = await waitState('Complete', 3, 'RolloutComplete');
    expect(done).toMatchObject({ fromVersion: '1', toVersion: '2', batches: 3 });
    await until(() => get()?.status?.servingVersion === '2', 'every node serving 2');
    // The first time each node was sent 2: batch by batch.
    const firstV2 = (n: string) => f.log.findIndex((e) => e.node === n && e.version === '2');
    for (let b = 1; b < batches.length; b++) {
      const latestBefore = Math.max(...batches[b - 1].map(firstV2));
      for (const n of batches[b]) expect(firstV2(n)).toBeGreaterThan(latestBefore);
    }
    // Nodes not yet reached were never sent anything but 1 before their batch.
    for (const n of batches[2]) expect(f.log.slice(0, firstV2(n)).filter((e) => e.node === n).every((e) => e.version === '1')).toBe(true);
    // kubectl describe's lines: started, each later batch, complete; once each.
    await waitEvent(/^Normal RolloutComplete: rollout \w+ complete: 2 on every node, 3 batches done$/);
    expect(events()).toEqual(expect.arrayContaining([expect.stringMatching(/^Normal RolloutStarted: rollout \w+ started: 1 -> 2 in 3 batches$/), 'Normal BatchStarted: batch 2/3 started: its nodes get 2', 'Normal BatchStarted: batch 3/3 started: its nodes get 2']));
    expect(events()).toHaveLength(4);
  });

  it('writes a BatchStarted for every batch of a long rollout (steps are not capped like failed nodes)', async () => {
    const f = await fleet(12);
    await controller();
    const rollout: RolloutSpec = { batch: { count: 1 } };
    const batches = await servingV1(f, rollout);
    expect(batches).toHaveLength(12);
    patchRollout(rollout, { targetVersion: '2' });
    await waitState('Complete', 12);
    await waitEvent(/^Normal RolloutComplete: .* 12 batches done$/);
    await until(() => count('BatchStarted') >= 11, 'eleven BatchStarted Events');
    expect(events().filter((e) => e.includes('BatchStarted')).sort()).toEqual(Array.from({ length: 11 }, (_, i) => `Normal BatchStarted: batch ${i + 2}/12 started: its nodes get 2`).sort());
  });

  it('pauses until a person resumes, holds on spec.rollout.paused, and steering patches do not start a new rollout', async () => {
    const f = await fleet(6);
    await controller();
    const rollout: RolloutSpec = { canary: { count: 2 }, batch: { count: 2 }, pauseUntilResumed: true };
    const batches = await servingV1(f, rollout);
    patchRollout(rollout, { targetVersion: '2' });
    const paused = await waitState('Paused', 1, 'AwaitingResume');
    expect(paused.message).toContain('resumeBatch to 2');
    for (const n of batches[0]) expect(f.version(n)).toBe('2');
    for (const n of [...batches[1], ...batches[2]]) expect(f.version(n)).toBe('1');
    // paused: true holds it even though batch 2 is allowed.
    patchRollout({ paused: true, resumeBatch: 2 });
    await waitState('Paused', 1, 'PausedByUser');
    for (const n of batches[1]) expect(f.version(n)).toBe('1');
    patchRollout({ paused: false });
    await waitState('Paused', 2, 'AwaitingResume');
    for (const n of batches[1]) expect(f.version(n)).toBe('2');
    for (const n of batches[2]) expect(f.version(n)).toBe('1');
    const revision = rolloutStatus().revision;
    patchRollout({ resumeBatch: 3 });
    await waitState('Complete', 3);
    expect(rolloutStatus().revision).toBe(revision);
    for (const n of f.names) expect(f.version(n)).toBe('2');
    // Each pause says why and what resumes it; each resume and batch is a line.
    await waitEvent(/^Normal RolloutComplete:/);
    expect(events()).toEqual(
      expect.arrayContaining([
        'Normal RolloutPaused: AwaitingResume: batch 1/3 done; set spec.rollout.resumeBatch to 2 to start the next batch',
        'Normal RolloutPaused: PausedByUser: batch 1/3 done; spec.rollout.paused holds batch 2',
        'Normal RolloutResumed: resumed after PausedByUser in batch 1/3',
        'Normal BatchStarted: batch 2/3 started: its nodes get 2',
        'Normal RolloutPaused: AwaitingResume: batch 2/3 done; set spec.rollout.resumeBatch to 3 to start the next batch',
        'Normal RolloutResumed: resumed after AwaitingResume in batch 2/3',
        'Normal BatchStarted: batch 3/3 started: its nodes get 2',
      ]),
    );
    // The steering patches started no new rollout.
    expect(count('RolloutStarted')).toBe(1);
    expect(events()).toHaveLength(9);
  });

  it('starts the next batch by itself once a timed pause ends', async () => {
    const f = await fleet(4);
    await controller();
    const rollout: RolloutSpec = { batch: { count: 2 }, pauseSeconds: 1 };
    const batches = await servingV1(f, rollout);
    patchRollout(rollout, { targetVersion: '2' });
    const paused = await waitState('Paused', 1, 'BatchPause');
    for (const n of batches[1]) expect(f.version(n)).toBe('1');
    const done = await waitState('Complete', 2);
    // The second batch was started no earlier than the pause's end.
    expect(Date.parse(done.batchStartTime)).toBeGreaterThanOrEqual(Date.parse(paused.pauseStartTime) + 1000);
    const until1s = new Date(Date.parse(paused.pauseStartTime) + 1000).toISOString();
    await waitEvent(/^Normal RolloutComplete:/);
    expect(events()).toEqual(expect.arrayContaining([`Normal RolloutPaused: BatchPause: batch 1/2 done; batch 2 starts at ${until1s}`, 'Normal RolloutResumed: resumed after BatchPause in batch 1/2', 'Normal BatchStarted: batch 2/2 started: its nodes get 2']));
    for (const n of f.names) expect(f.version(n)).toBe('2');
  });

  it('aborts at the failure threshold: the failed node goes back to 1, unreached nodes keep 1, and the status says why', async () => {
    const f = await fleet(8);
    await controller();
    const rollout: RolloutSpec = { canary: { count: 3 }, failureThreshold: { count: 1 } };
    const batches = await servingV1(f, rollout);
    const [bad, ...good] = batches[0];
    f.failing.set(bad, new Set(['2']));
    patchRollout(rollout, { targetVersion: '2' });
    const aborted = await waitState('Aborted', 1, 'FailureThresholdExceeded');
    expect(aborted.message).toContain('of batch 1/2 failed');
    expect(await waitEvent(/^Warning RolloutAborted:/)).toBe(`Warning RolloutAborted: FailureThresholdExceeded: ${aborted.message}; nodes not reached keep 1`);
    // The failed node is sent the version it served; its report says Serving 1 again.
    await until(() => f.version(bad) === '1', 'failed node rolled back to 1');
    // The resource counts (it lists only nodes that need a person): the failed node serves 1 again,
    // with the unreached ones; the good canaries serve 2; none is left Failed.
    const served = (v: string) => get()?.status?.versions?.find((e: any) => e.version === v)?.nodes;
    await until(() => served('1') === 1 + batches[1].length && served('2') === good.length && !get()?.status?.phases?.Failed, 'rolled-back node serving 1, the good canaries 2');
    expect(get()?.status?.nodes?.some((e: any) => e.node === bad)).toBe(false);
    for (const n of good) expect(f.version(n)).toBe('2');
    for (const n of batches[1]) expect(f.log.filter((e) => e.node === n).every((e) => e.version === '1')).toBe(true);
    // A person's abort of the next rollout stops it too.
    f.failing.clear();
    patchRollout({ ...rollout, abort: true }, { targetVersion: '1' });
    await until(() => rolloutStatus()?.toVersion === '1' && rolloutStatus()?.reason === 'AbortedByUser', 'abort by spec.rollout.abort');
    await waitEvent(/^Warning RolloutAborted: AbortedByUser: aborted by spec.rollout.abort in batch 1\/\d+; set abort to false to start this revision again from batch 1; nodes not reached keep 1$/);
    expect(count('RolloutStarted')).toBe(2);
    expect(count('RolloutAborted')).toBe(2);
  });

  it('picks up mid-rollout after a controller restart: same batch, unreached nodes keep 1, then carries on', async () => {
    const f = await fleet(6);
    const first = await controller();
    const rollout: RolloutSpec = { canary: { count: 2 }, batch: { count: 2 }, pauseUntilResumed: true };
    const batches = await servingV1(f, rollout);
    patchRollout(rollout, { targetVersion: '2' });
    const before = await waitState('Paused', 1, 'AwaitingResume');
    await first.stop();
    const syncsBefore = new Map(f.names.map((n) => [n, f.nodes.get(n)!.received.filter((m) => m.route.operation === 'sync').length]));
    const second = await controller();
    // The new controller syncs every node in full, from the status it read back.
    for (const n of f.names) await f.nodes.get(n)!.waitFor((s) => s.received.filter((m) => m.route.operation === 'sync').length > syncsBefore.get(n)!, undefined, 'a sync after the restart');
    for (const n of batches[0]) expect(f.version(n)).toBe('2');
    for (const n of [...batches[1], ...batches[2]]) expect(f.version(n)).toBe('1');
    expect(rolloutStatus()).toMatchObject({ revision: before.revision, batch: 1, state: 'Paused', batchStartTime: before.batchStartTime });
    // It stays paused before it has heard the canaries again and after (a flap would write a
    // resume and a second pause; the counts below say none was).
    await until(() => second.nodeDetail(KEY)?.nodes.filter((n) => batches[0].includes(n.node) && n.phase === 'Serving').length === batches[0].length, 'the canaries heard again');
    await second.idle();
    expect(rolloutStatus()).toMatchObject({ batch: 1, state: 'Paused', reason: 'AwaitingResume' });
    patchRollout({ resumeBatch: 3 });
    await waitState('Complete', 3);
    for (const n of f.names) expect(f.version(n)).toBe('2');
    // The new controller read the rollout back from status: nothing the first one wrote is written again.
    await waitEvent(/^Normal RolloutComplete:/);
    expect(count('RolloutStarted')).toBe(1);
    expect(count('RolloutPaused')).toBe(1);
    expect(events()).toEqual(expect.arrayContaining(['Normal RolloutResumed: resumed after AwaitingResume in batch 1/3', 'Normal BatchStarted: batch 2/3 started: its nodes get 2', 'Normal BatchStarted: batch 3/3 started: its nodes get 2']));
    expect(events()).toHaveLength(6);
  });

  it('carries on after a leader change mid-rollout: the new leader reads the progress from status', async () => {
    const f = await fleet(6);
    const rest = kubeRest(kubeConfigFor(api));
    const replica = (identity: string) => {
      const stop = new AbortController();
      const elector = new LeaderElector({ rest, namespace: 'default', name: 'modeld-controller', identity, log: silentLogger(), retryPeriodMs: 50, leaseDurationSec: 2 });
      let ctl: Promise<Controller> | undefined;
      const running = elector.run(stop.signal, () => {
        ctl = startController(api, { brokerUrl: broker.url }).then((c) => c.controller);
      });
      const r = {
        leading: () => elector.isLeader() && ctl !== undefined,
        async stop() {
          stop.abort();
          await running;
          await (await ctl)?.stop();
          await elector.release();
        },
      };
      cleanups.push(() => r.stop());
      return r;
    };
    const a = replica('ctl-a');
    await until(() => a.leading(), 'ctl-a leading');
    const b = replica('ctl-b');
    const rollout: RolloutSpec = { canary: { count: 2 }, batch: { count: 2 }, pauseUntilResumed: true };
    const batches = await servingV1(f, rollout);
    patchRollout(rollout, { targetVersion: '2' });
    await waitState('Paused', 1, 'AwaitingResume');
    patchRollout({ resumeBatch: 2 });
    await waitState('Paused', 2, 'AwaitingResume');
    expect(b.leading()).toBe(false);
    await a.stop();
    const handover = f.log.length;
    await until(() => b.leading(), 'ctl-b leading');
    patchRollout({ resumeBatch: 3 });
    await waitState('Complete', 3);
    for (const n of f.names) expect(f.version(n)).toBe('2');
    // Batch 3 reached its nodes only after the new leader took over: before, they held 1 throughout.
    for (const n of batches[2]) expect(f.log.findIndex((e) => e.node === n && e.version === '2')).toBeGreaterThanOrEqual(handover);
    expect(rolloutStatus().fromVersion).toBe('1');
    // Only the leader writes Events, and the new one wrote none the old one had written.
    await waitEvent(/^Normal RolloutComplete:/);
    expect(count('RolloutStarted')).toBe(1);
    expect(count('BatchStarted')).toBe(2);
    expect(count('RolloutPaused')).toBe(2);
  });
});
