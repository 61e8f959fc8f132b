import { describe, expect, it } from 'vitest';
import { InferenceModelSpecSchema } from '../../shared/index.js';
import { keepTrees, plan, type PlanInput } from '../../agent/reconcile/plan.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);
const v1 = { version: '1', sha256: A };
const v2 = { version: '2', sha256: B };
/** Version 1 republished: same name, other bytes. */
const v1b = { version: '1', sha256: C };
const spec = (extra: Record<string, unknown> = {}) =>
  InferenceModelSpecSchema.parse({
    modelName: 'm',
    deployToLayer: 'edge',
    manifest: [
      { version: '1', downloadURL: 'http://127.0.0.1/1.tgz', sha256sum: A },
      { version: '2', downloadURL: 'http://127.0.0.1/2.tgz', sha256sum: B },
    ],
    ...extra,
  });
const republished = (extra: Record<string, unknown> = {}) => spec({ manifest: [{ version: '1', downloadURL: 'http://127.0.0.1/1-retrained.tgz', sha256sum: C }], ...extra });

const input = (desired: PlanInput['desired'], actual: Partial<PlanInput['actual']> = {}): PlanInput => ({
  desired,
  actual: { installed: [], blobs: [], servingEnabled: true, present: false, ...actual },
  allowUnverified: false,
});
const want = (extra: Record<string, unknown> = {}, hash = 'h1') => ({ spec: spec(extra), specHash: hash, generation: 1 });
const kinds = (p: ReturnType<typeof plan>) => p.steps.map((s) => s.kind);
const serving = (t: { version: string; sha256?: string }, extra: Partial<PlanInput['actual']> = {}): Partial<PlanInput['actual']> => ({
  installed: [t], current: t, serving: t, running: { tree: t, replicas: 1 }, present: true, ...extra,
});

describe('planner', () => {
  it('fetches, installs, serves and points a new model at the highest version', () => {
    const p = plan(input(want()));
    expect(p.want).toEqual(v2);
    expect(p.steps).toEqual([
      { kind: 'fetch', version: '2', url: 'http://127.0.0.1/2.tgz', sha256: B },
      { kind: 'install', version: '2', sha256: B },
      { kind: 'serve', tree: v2, replicas: 1 },
      { kind: 'point', tree: v2 },
    ]);
  });

  it('skips the download when the blob is already in the store (offline pre-seeding)', () => {
    expect(kinds(plan(input(want(), { blobs: [B] })))).toEqual(['install', 'serve', 'point']);
  });

  it('does nothing when the target tree is installed, running and current', () => {
    expect(plan(input(want(), serving(v2))).steps).toEqual([]);
  });

  it('fetches a version republished with other bytes, installs it beside the serving tree, and switches to it', () => {
    const p = plan(input({ spec: republished(), specHash: 'h2', generation: 2 }, serving(v1)));
    expect(p.want).toEqual(v1b);
    expect(p.steps).toEqual([
      { kind: 'fetch', version: '1', url: 'http://127.0.0.1/1-retrained.tgz', sha256: C },
      { kind: 'install', version: '1', sha256: C },
      { kind: 'serve', tree: v1b, replicas: 1 },
      { kind: 'point', tree: v1b },
    ]);
  });

  it('never counts a tree with no recorded digest as the bytes a spec names', () => {
    const legacy = { version: '2' };
    expect(kinds(plan(input(want(), serving(legacy))))).toEqual(['fetch', 'install', 'serve', 'point']);
  });

  it('restarts the current tree first after a restart, before working toward a new target', () => {
    const p = plan(input(want(), { installed: [v1], current: v1, serving: v1, present: true }));
    expect(kinds(p)).toEqual(['serve', 'fetch', 'install', 'serve', 'point']);
    expect(p.steps[0]).toEqual({ kind: 'serve', tree: v1, replicas: 1 });
  });

  it('restores the old build of a version before fetching its republished build', () => {
    const p = plan(input({ spec: republished(), specHash: 'h2', generation: 2 }, { installed: [v1], current: v1, serving: v1, present: true }));
    expect(p.steps[0]).toEqual({ kind: 'serve', tree: v1, replicas: 1 });
    expect(kinds(p)).toEqual(['serve', 'fetch', 'install', 'serve', 'point']);
  });

  it('does not try to restore again once restoring failed', () => {
    const p = plan(input(want(), { installed: [v1], current: v1, serving: v1, present: true, restoreFailed: true }));
    expect(kinds(p)).toEqual(['fetch', 'install', 'serve', 'point']);
  });

  it('keeps serving the old tree and does not retry a target that failed under the same spec', () => {
    const p = plan(input(want(), serving(v1, { failed: v2, failedSpecHash: 'h1' })));
    expect(p).toMatchObject({ want: v1, blocked: true, steps: [] });
  });

  it('keeps serving the old build when the republished build of the same version failed', () => {
    const p = plan(input({ spec: republished(), specHash: 'h2', generation: 2 }, serving(v1, { failed: v1b, failedSpecHash: 'h2' })));
    expect(p).toMatchObject({ want: v1, blocked: true, steps: [] });
  });

  it('tries the failed tree again once the spec changes', () => {
    expect(plan(input(want({}, 'h2'), serving(v1, { failed: v2, failedSpecHash: 'h1' }))).want).toEqual(v2);
  });

  it('a failure recorded without a digest blocks every tree of its version', () => {
    expect(plan(input(want(), serving(v1, { failed: { version: '2' }, failedSpecHash: 'h1' }))).blocked).toBe(true);
  });

  it('rolls back to the previous tree when the serving one crash-looped', () => {
    const actual = serving(v2, { installed: [v1, v2], previous: v1, failed: v2, failedSpecHash: 'h1' });
    expect(plan(input(want(), actual))).toMatchObject({ want: v1, steps: [{ kind: 'serve', tree: v1 }, { kind: 'point', tree: v1 }] });
  });

  it('rolls back from a republished build to the first build of the same version', () => {
    const actual = serving(v1b, { installed: [v1, v1b], previous: v1, failed: v1b, failedSpecHash: 'h2' });
    expect(plan(input({ spec: republished(), specHash: 'h2', generation: 2 }, actual))).toMatchObject({
      want: v1,
      blocked: true,
      steps: [{ kind: 'serve', tree: v1 }, { kind: 'point', tree: v1 }],
    });
  });

  it('serves a held (rolled back) tree while the spec is unchanged', () => {
    const actual = serving(v1b, { installed: [v1, v1b], previous: v1, held: v1, heldSpecHash: 'h2' });
    expect(plan(input({ spec: republished(), specHash: 'h2', generation: 2 }, actual)).want).toEqual(v1);
    expect(plan(input({ spec: republished(), specHash: 'h3', generation: 3 }, actual)).want).toEqual(v1b);
  });

  it('scales when only replicas change', () => {
    expect(plan(input(want({ replicas: 3 }), serving(v2))).steps).toEqual([{ kind: 'serve', tree: v2, replicas: 3 }]);
  });

  it('delivers only (no serve) when serving is off', () => {
    expect(kinds(plan(input(want(), { servingEnabled: false })))).toEqual(['fetch', 'install', 'point']);
  });

  it('collects garbage once a switch made an older tree unprotected, after everything else', () => {
    expect(kinds(plan(input(want(), serving(v2, { gcDue: true }))))).toEqual(['gc']);
    expect(kinds(plan(input(want(), serving(v1, { installed: [v1, v2], gcDue: true }))))).toEqual(['serve', 'point', 'gc']);
  });

  it('stops and removes a model whose spec is gone', () => {
    expect(kinds(plan(input(undefined, { running: { tree: v1, replicas: 1 }, present: true })))).toEqual(['stop', 'remove']);
    expect(plan(input(undefined, {})).steps).toEqual([]);
  });

  it("removes local deployment of an image spec and says it is not the agent's", () => {
    const p = plan(input(want({ image: 'registry/model:1' }), { present: true, installed: [v1] }));
    expect(p.steps).toEqual([{ kind: 'remove' }]);
    expect(p.refusal?.reason).toBe('ImageNotForAgent');
  });

  it('refuses a spec whose target is missing or has no digest', () => {
    expect(plan(input(want({ targetVersion: '7' }))).refusal?.reason).toBe('TargetVersionNotInManifest');
    const noDigest = { spec: InferenceModelSpecSchema.parse({ modelName: 'm', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: 'http://x/1' }] }), specHash: 'h', generation: 1 };
    expect(plan(input(noDigest)).refusal?.reason).toBe('MissingDigest');
    expect(kinds(plan({ ...input(noDigest), allowUnverified: true }))).toEqual(['fetch', 'install', 'serve', 'point']);
  });

  it('an unverified spec (no digest) is served from the newest installed tree of its version', () => {
    const noDigest = { spec: InferenceModelSpecSchema.parse({ modelName: 'm', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: 'http://x/1' }] }), specHash: 'h', generation: 1 };
    const p = plan({ ...input(noDigest, serving(v1b, { installed: [v1, v1b] })), allowUnverified: true });
    expect(p).toMatchObject({ want: v1b, steps: [] });
  });

  it('points the link when it disagrees with the database after a crash mid-switch', () => {
    const actual = serving(v2, { installed: [v1, v2], serving: v1 });
    expect(plan(input(want(), actual)).steps).toEqual([{ kind: 'point', tree: v2 }]);
  });
});

describe('keepTrees (what gc and repairs never remove)', () => {
  it('keeps current, serving, previous, running, a hold in force and the target; not other builds', () => {
    const old = { version: '0', sha256: 'd'.repeat(64) };
    const actual = { installed: [old, v1, v1b, v2], current: v1b, serving: v1b, previous: v1, running: { tree: v1b, replicas: 1 }, held: v1, heldSpecHash: 'h2', present: true };
    const keep = keepTrees(input({ spec: republished(), specHash: 'h2', generation: 2 }, actual));
    expect(keep).toEqual(expect.arrayContaining([v1, v1b]));
    expect(keep).not.toContainEqual(old);
    expect(keep).not.toContainEqual(v2);
    expect(keepTrees(input(want(), { installed: [v1], current: v1, present: true }))).toEqual(expect.arrayContaining([v1, v2]));
  });

  it('a stale hold protects nothing', () => {
    const keep = keepTrees(input({ spec: republished(), specHash: 'h3', generation: 3 }, { installed: [v2, v1b], current: v1b, serving: v1b, held: v2, heldSpecHash: 'h2', present: true }));
    expect(keep).not.toContainEqual(v2);
  });
});

// Counterexamples fast-check found (plan.property.test.ts), kept as examples. Each names the seed
// and path that reproduce it with the property test as it was then.
describe('planner regressions found by the property test', () => {
  const unverified = (version: string) => ({
    spec: InferenceModelSpecSchema.parse({ modelName: 'm', deployToLayer: 'edge', manifest: [{ version, downloadURL: `http://127.0.0.1/${version}-0.tgz` }] }),
    specHash: 'hu',
    generation: 1,
  });
  const E = 'e'.repeat(64);

  it('installs an unverified download once fetched instead of fetching it again (seed 42, path 19:2:0:0:0:0:0:0:0:0:0:0:0:0:0:0:1:1)', () => {
    const p = plan({ ...input(unverified('1'), { blobs: [E], learnt: { 'http://127.0.0.1/1-0.tgz': E } }), allowUnverified: true });
    expect(p.steps[0]).toEqual({ kind: 'install', version: '1', sha256: E });
    expect(p.want).toEqual({ version: '1', sha256: E });
  });

  it('does not try a fallback again once it failed to serve: the failure stands (seed 42, path 502:1:1:1:1:1:1:2:2:2:3:2:2:3:3:5:4:4:7:8:7)', () => {
    const actual = { installed: [{ version: '1' }], previous: { version: '1' }, failed: { version: '2' }, failedSpecHash: 'hu', present: true };
    expect(plan({ ...input(unverified('2'), actual), allowUnverified: true })).toMatchObject({ want: { version: '1' }, blocked: true, steps: [{ kind: 'serve' }, { kind: 'point' }] });
    expect(plan({ ...input(unverified('2'), { ...actual, restoreFailed: true }), allowUnverified: true })).toMatchObject({ want: { version: '2' }, blocked: true, steps: [] });
  });

  it('goes on with the target alone once restoring current failed while a hold is in force (seed 1, path 1299:2:1:1:1:5:4:9:8:8:8:8:12:12:12:14:17:15:15)', () => {
    const held = { version: '3', sha256: A };
    const actual = { installed: [{ version: '2' }, held], current: { version: '2' }, held, heldSpecHash: 'hu', present: true };
    expect(plan({ ...input(unverified('2'), actual), allowUnverified: true }).steps[0]).toEqual({ kind: 'serve', tree: { version: '2' }, replicas: 1 });
    const afterRestoreFailed = plan({ ...input(unverified('2'), { ...actual, restoreFailed: true }), allowUnverified: true });
    expect(afterRestoreFailed).toMatchObject({ want: { version: '2' }, steps: [{ kind: 'serve', tree: { version: '2' } }, { kind: 'point' }] });
    const afterTargetFailed = plan({ ...input(unverified('2'), { ...actual, restoreFailed: true, failed: { version: '2' }, failedSpecHash: 'hu' }), allowUnverified: true });
    expect(afterTargetFailed).toMatchObject({ blocked: true, steps: [] });
  });

  it('does not choose a held tree that failed under this spec (seed 7, path 1111:1:0:1:0:0:0:0:0:0:0:0:3:4:5; seed 1234, path 356:2:0:0:0:0:0:0:0:0:2:2:3:3:3:4:5)', () => {
    const only1 = spec({ manifest: [{ version: '1', downloadURL: 'http://127.0.0.1/1-0.tgz', sha256sum: A }] });
    const actual = { installed: [v1], held: v1, heldSpecHash: 'h1', failed: v1, failedSpecHash: 'h1', present: true };
    expect(plan(input({ spec: only1, specHash: 'h1', generation: 1 }, actual))).toMatchObject({ want: v1, blocked: true, steps: [] });
  });
});
