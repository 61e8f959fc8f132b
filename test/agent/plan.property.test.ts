import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InferenceModelSpecSchema, resolveTarget, type InferenceModelSpec } from '../../shared/index.js';
import { sameTree, type TreeRef } from '../../agent/install/tree-ref.js';
import { keepTrees, plan, specTree, type Plan, type PlanInput, type Step } from '../../agent/reconcile/plan.js';
import { specHash } from '../../agent/reconcile/spec-hash.js';

// Properties of the planner over random desired specs and actual states. A small pure simulator
// (below) applies each step's effect to the actual state as the executors and the runner do —
// including failures, on a random schedule — and the runner's loop is replayed: plan, run the
// first step, plan again. Seeded, so every run checks the same cases; fast-check prints the seed
// and path of a failure, and each one found is kept in plan.test.ts as an example.

// FC_SEED and FC_RUNS explore further by hand; the suite always runs seed 42, 2000 runs.
const SEED = Number(process.env.FC_SEED ?? 42);
const RUNS = Number(process.env.FC_RUNS ?? 2000);
/** The runner gives up after 24 steps (MAX_STEPS); a plan must converge well within that. */
const BOUND = 10;

// A small universe, so that trees collide often: the same version under several digests (a
// republish), the serving tree also the failed or the held one, and so on.
const VERSIONS = ['1', '2', '3'];
const DIGESTS = ['a', 'b', 'c'].map((c) => c.repeat(64));
/** What an unverified download turns out to hash to. */
const LEARNT = 'e'.repeat(64);

type Actual = PlanInput['actual'];
interface World {
  input: PlanInput;
  /** Which attempts of a failable step (fetch, install, serve) fail, in order: passing trouble. */
  failures: boolean[];
  /** Trees that never become ready (a broken build): every serve of one fails. */
  broken: TreeRef[];
  /** Archives whose download always fails (a 404). */
  unfetchable: string[];
}

const treeArb: fc.Arbitrary<TreeRef> = fc.record(
  { version: fc.constantFrom(...VERSIONS), sha256: fc.option(fc.constantFrom(...DIGESTS), { nil: undefined, freq: 5 }) },
  { requiredKeys: ['version'] },
).map((t) => (t.sha256 ? { version: t.version, sha256: t.sha256 } : { version: t.version }));

const specArb: fc.Arbitrary<InferenceModelSpec> = fc
  .record({
    versions: fc.uniqueArray(fc.constantFrom(...VERSIONS), { minLength: 1, maxLength: 3 }),
    digests: fc.array(fc.option(fc.constantFrom(...DIGESTS), { nil: undefined, freq: 8 }), { minLength: 3, maxLength: 3 }),
    target: fc.option(fc.constantFrom(...VERSIONS, '9'), { nil: undefined }),
    replicas: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
    image: fc.option(fc.constant('registry/model:1'), { nil: undefined, freq: 12 }),
  })
  .map(({ versions, digests, target, replicas, image }) =>
    InferenceModelSpecSchema.parse({
      modelName: 'm',
      deployToLayer: 'edge',
      manifest: versions.map((version, i) => ({ version, downloadURL: `http://127.0.0.1/${version}-${i}.tgz`, ...(digests[i] ? { sha256sum: digests[i] } : {}) })),
      ...(target ? { targetVersion: target } : {}),
      ...(replicas ? { replicas } : {}),
      ...(image ? { image } : {}),
    }),
  );

/** A tree named by some field of the state: mostly one of the installed ones (by index), the target's, or any. */
type TreeChoice = { installed: number } | { target: true } | { any: TreeRef };
const choiceArb: fc.Arbitrary<TreeChoice | undefined> = fc.option(
  fc.oneof({ arbitrary: fc.nat().map((installed) => ({ installed })), weight: 3 }, { arbitrary: fc.constant({ target: true as const }), weight: 1 }, { arbitrary: treeArb.map((any) => ({ any })), weight: 1 }),
  { nil: undefined, freq: 3 },
);

const worldArb: fc.Arbitrary<World> = fc
  .record({
    spec: fc.option(specArb, { nil: undefined, freq: 8 }),
    installed: fc.uniqueArray(treeArb, { maxLength: 5, selector: (t) => `${t.version}@${t.sha256 ?? ''}` }),
    current: choiceArb,
    currentInstalled: fc.boolean(),
    serving: choiceArb,
    previous: choiceArb,
    failed: choiceArb,
    failedUnderThisSpec: fc.boolean(),
    held: choiceArb,
    heldUnderThisSpec: fc.boolean(),
    running: fc.option(fc.record({ tree: choiceArb, replicas: fc.integer({ min: 1, max: 3 }) }), { nil: undefined }),
    blobs: fc.subarray(DIGESTS),
    servingEnabled: fc.boolean(),
    restoreFailed: fc.boolean(),
    gcDue: fc.boolean(),
    allowUnverified: fc.boolean(),
    failures: fc.array(fc.boolean(), { maxLength: 8 }),
    broken: fc.array(choiceArb, { maxLength: 3 }),
    unfetchable: fc.subarray([...DIGESTS, LEARNT], { maxLength: 2 }),
  })
  .map((w) => {
    const hash = w.spec && specHash(w.spec);
    const target = w.spec && !w.spec.image ? resolveTarget(w.spec) : undefined;
    const choose = (c: TreeChoice | undefined): TreeRef | undefined => {
      if (!c) return undefined;
      if ('installed' in c) return w.installed.length ? w.installed[c.installed % w.installed.length] : undefined;
      if ('target' in c) return target ? specTree(target, { installed: w.installed }) : undefined;
      return c.any;
    };
    const current = choose(w.current);
    // `current` usually names an installed tree; sometimes (tampering, a lost tree) it does not.
    const installed = current && w.currentInstalled && !w.installed.some((t) => sameTree(t, current)) ? [...w.installed, current] : w.installed;
    const failed = choose(w.failed);
    const held = choose(w.held);
    const runningTree = w.running && choose(w.running.tree);
    const actual: Actual = {
      current,
      serving: choose(w.serving),
      previous: choose(w.previous),
      failed,
      failedSpecHash: failed ? (w.failedUnderThisSpec && hash ? hash : 'another-spec') : undefined,
      held,
      heldSpecHash: held ? (w.heldUnderThisSpec && hash ? hash : 'another-spec') : undefined,
      installed,
      blobs: w.blobs,
      running: w.servingEnabled && runningTree ? { tree: runningTree, replicas: w.running!.replicas } : undefined,
      servingEnabled: w.servingEnabled,
      present: installed.length > 0 || !!current || !!w.serving || w.gcDue,
      restoreFailed: w.restoreFailed,
      gcDue: w.gcDue,
    };
    return {
      input: { desired: w.spec && { spec: w.spec, specHash: hash!, generation: 1 }, actual, allowUnverified: w.allowUnverified },
      failures: w.failures,
      broken: w.broken.map(choose).filter((t): t is TreeRef => t !== undefined),
      unfetchable: w.unfetchable,
    };
  });

// ---- the simulator: each step's effect on the actual state ----------------------------------

interface Sim {
  input: PlanInput;
  failures: boolean[];
  world: World;
}

const without = (trees: TreeRef[], t: TreeRef) => trees.filter((x) => !sameTree(x, t));

function apply(sim: Sim, step: Step, p: Plan): Sim {
  const a: Actual = { ...sim.input.actual };
  const hash = sim.input.desired?.specHash;
  const learnt = { ...a.learnt };
  const failable = step.kind === 'fetch' || step.kind === 'install' || step.kind === 'serve';
  const persistent =
    (step.kind === 'serve' && sim.world.broken.some((t) => sameTree(t, step.tree))) || (step.kind === 'fetch' && sim.world.unfetchable.includes(step.sha256 ?? LEARNT));
  const fails = persistent || (failable && (sim.failures[0] ?? false));
  const failures = failable ? sim.failures.slice(1) : sim.failures;
  const next = (patch: Partial<Actual>): Sim => ({ input: { ...sim.input, actual: { ...a, learnt, ...patch } }, failures, world: sim.world });
  if (fails) {
    // The runner: a serve of anything but the target's tree (restoring, held, a fallback) failing
    // ends trying other trees under this spec; any other failure blocks that tree under this spec.
    if (step.kind === 'serve' && !(sameTree(step.tree, p.want) && sameTree(step.tree, p.target))) return next({ restoreFailed: true });
    const sha256 = step.kind === 'fetch' ? (step.sha256 ?? learnt[step.url]) : step.kind === 'install' ? step.sha256 : undefined;
    const tree = step.kind === 'serve' ? step.tree : sha256 ? { version: step.version, sha256 } : { version: step.version };
    return next({ failed: tree, failedSpecHash: hash });
  }
  switch (step.kind) {
    case 'fetch': {
      const sha = step.sha256 ?? LEARNT;
      if (!step.sha256) learnt[step.url] = sha;
      return next({ blobs: a.blobs.includes(sha) ? a.blobs : [...a.blobs, sha] });
    }
    case 'install': {
      const sha = step.sha256;
      expect(sha, 'an install runs with a known digest').toMatch(/^[0-9a-f]{64}$/);
      expect(a.blobs, 'an install only ever runs with its archive in the store').toContain(sha);
      const tree = { version: step.version, sha256: sha };
      return next({ installed: [...without(a.installed, tree), tree], present: true }); // newest last
    }
    case 'serve':
      expect(a.installed, 'a serve names an installed tree').toContainEqual(step.tree);
      return next({ running: { tree: step.tree, replicas: step.replicas } });
    case 'point': {
      expect(a.installed, 'current is only ever pointed at an installed tree').toContainEqual(step.tree);
      const previous = a.serving && !sameTree(a.serving, step.tree) ? a.serving : a.previous;
      return next({ current: step.tree, serving: step.tree, previous, gcDue: true, present: true });
    }
    case 'gc': {
      // The harshest gc (a cap of 0): every tree the planner does not keep goes.
      const keep = keepTrees(sim.input);
      return next({ installed: a.installed.filter((t) => keep.some((k) => sameTree(k, t))), gcDue: false });
    }
    case 'stop':
      return next({ running: undefined });
    case 'remove':
      return next({
        installed: [], current: undefined, serving: undefined, previous: undefined, failed: undefined, failedSpecHash: undefined,
        held: undefined, heldSpecHash: undefined, present: false, gcDue: false,
      });
  }
}

/** The runner's loop: plan, run the first step, plan again; every state and step on the way. */
function converge(world: World): { states: PlanInput[]; steps: Step[]; converged: boolean } {
  let sim: Sim = { input: world.input, failures: world.failures, world };
  const states = [sim.input];
  const steps: Step[] = [];
  for (let i = 0; i < BOUND; i++) {
    const p = plan(sim.input);
    const step = p.steps[0];
    if (!step) return { states, steps, converged: true };
    steps.push(step);
    sim = apply(sim, step, p);
    states.push(sim.input);
  }
  return { states, steps, converged: plan(sim.input).steps.length === 0 };
}

const agentSpec = (input: PlanInput) => input.desired !== undefined && !input.desired.spec.image;
const removed = (before: PlanInput, after: PlanInput) => before.actual.installed.filter((t) => !after.actual.installed.some((x) => sameTree(x, t)));

let longest = 0;
const opts = { seed: SEED, numRuns: RUNS };

describe(`planner properties (fast-check, seed ${SEED}, ${RUNS} runs each)`, () => {
  it(`converges to no steps within ${BOUND} steps, whatever the state and whatever fails`, () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const run = converge(world);
        longest = Math.max(longest, run.steps.length);
        expect(run.converged, `steps: ${run.steps.map((s) => s.kind).join(' ')}`).toBe(true);
      }),
      opts,
    );
    expect(longest).toBeLessThanOrEqual(BOUND);
  });

  it('is idempotent: once converged, planning again (or the same spec again) gives no steps', () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const run = converge(world);
        const last = run.states.at(-1)!;
        expect(plan(last).steps).toEqual([]);
        expect(plan(last).steps).toEqual([]);
        if (last.desired) expect(plan({ ...last, desired: { ...last.desired, generation: last.desired.generation + 1 } }).steps).toEqual([]);
      }),
      opts,
    );
  });

  it('never removes the tree current points at, nor the rollback tree, while the model is desired', () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const run = converge(world);
        run.steps.forEach((step, i) => {
          const [before, after] = [run.states[i], run.states[i + 1]];
          if (!agentSpec(before)) return;
          const gone = removed(before, after);
          for (const t of [before.actual.current, before.actual.previous, after.actual.current, after.actual.previous]) {
            if (t) expect(gone, `${step.kind} removed ${t.version}@${t.sha256?.slice(0, 4)}`).not.toContainEqual(t);
          }
          // The tree `current` names stays installed from one step to the next.
          if (before.actual.current && before.actual.installed.some((x) => sameTree(x, before.actual.current))) {
            expect(after.actual.installed.some((x) => sameTree(x, after.actual.current)), `${step.kind} left current dangling`).toBe(true);
          }
        });
      }),
      opts,
    );
  });

  it("when converged and serving, `current` holds the spec's digest for the chosen version", () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const run = converge(world);
        const last = run.states.at(-1)!;
        const p = plan(last);
        if (!agentSpec(last) || p.refusal || !p.want) return;
        const a = last.actual;
        const target = resolveTarget(last.desired!.spec)!;
        const held = a.held && a.heldSpecHash === last.desired!.specHash && sameTree(p.want, a.held);
        if (p.blocked && sameTree(p.want, p.target)) return; // the target failed, with nothing to fall back to
        // What was chosen is what `current`, the row and the serving layer all name.
        expect(a.current).toEqual(p.want);
        expect(a.serving).toEqual(p.want);
        expect(a.installed).toContainEqual(p.want);
        if (a.servingEnabled) expect(a.running?.tree).toEqual(p.want);
        // Neither held nor a fallback after a failure: the chosen tree is the target, with the digest the spec names.
        if (!held && !p.blocked) {
          expect(p.want.version).toBe(target.version);
          if (target.sha256sum) expect(a.current?.sha256).toBe(target.sha256sum.toLowerCase());
        }
      }),
      opts,
    );
  });
});
