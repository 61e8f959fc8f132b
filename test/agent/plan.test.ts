import { describe, expect, it } from 'vitest';
import { InferenceModelSpecSchema } from '../../shared/index.js';
import { plan, type PlanInput } from '../../agent/reconcile/plan.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
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

const input = (desired: PlanInput['desired'], actual: Partial<PlanInput['actual']> = {}): PlanInput => ({
  desired,
  actual: { installed: [], blobs: [], servingEnabled: true, present: false, ...actual },
  allowUnverified: false,
});
const want = (extra: Record<string, unknown> = {}, hash = 'h1') => ({ spec: spec(extra), specHash: hash, generation: 1 });
const kinds = (p: ReturnType<typeof plan>) => p.steps.map((s) => s.kind);

describe('planner', () => {
  it('fetches, installs, starts and switches a new model toward the highest version', () => {
    const p = plan(input(want()));
    expect(p.want).toBe('2');
    expect(p.steps).toEqual([
      { kind: 'fetch', version: '2', url: 'http://127.0.0.1/2.tgz', sha256: B },
      { kind: 'install', version: '2', sha256: B },
      { kind: 'start', version: '2', replicas: 1 },
      { kind: 'switch', version: '2' },
    ]);
  });

  it('skips the download when the blob is already in the store (offline pre-seeding)', () => {
    expect(kinds(plan(input(want(), { blobs: [B] })))).toEqual(['install', 'start', 'switch']);
  });

  it('does nothing when the target is installed, running and current', () => {
    const p = plan(input(want(), { installed: ['2'], current: '2', servingVersion: '2', running: { version: '2', replicas: 1 }, present: true }));
    expect(p.steps).toEqual([]);
  });

  it('restarts the current version first after a restart, before working toward a new target', () => {
    const p = plan(input(want(), { installed: ['1'], current: '1', servingVersion: '1', present: true }));
    expect(kinds(p)).toEqual(['start', 'fetch', 'install', 'start', 'switch']);
    expect(p.steps[0]).toEqual({ kind: 'start', version: '1', replicas: 1 });
  });

  it('does not try to restore again once restoring failed', () => {
    const p = plan(input(want(), { installed: ['1'], current: '1', servingVersion: '1', present: true, restoreFailed: true }));
    expect(kinds(p)).toEqual(['fetch', 'install', 'start', 'switch']);
  });

  it('keeps serving the old version and does not retry a target that failed under the same spec', () => {
    const actual = { installed: ['1'], current: '1', servingVersion: '1', running: { version: '1', replicas: 1 }, failedVersion: '2', failedSpecHash: 'h1', present: true };
    const p = plan(input(want(), actual));
    expect(p).toMatchObject({ want: '1', blocked: true, steps: [] });
  });

  it('tries the failed version again once the spec changes', () => {
    const actual = { installed: ['1'], current: '1', servingVersion: '1', running: { version: '1', replicas: 1 }, failedVersion: '2', failedSpecHash: 'h1', present: true };
    expect(plan(input(want({}, 'h2'), actual)).want).toBe('2');
  });

  it('rolls back to the previous version when the serving one crash-looped', () => {
    const actual = { installed: ['1', '2'], current: '2', servingVersion: '2', previousVersion: '1', running: { version: '2', replicas: 1 }, failedVersion: '2', failedSpecHash: 'h1', present: true };
    expect(plan(input(want(), actual))).toMatchObject({ want: '1', steps: [{ kind: 'start', version: '1' }, { kind: 'switch', version: '1' }] });
  });

  it('serves a held (rolled back) version while the spec is unchanged', () => {
    const actual = { installed: ['1', '2'], current: '2', servingVersion: '2', previousVersion: '1', running: { version: '2', replicas: 1 }, heldVersion: '1', heldSpecHash: 'h1', present: true };
    expect(plan(input(want(), actual)).want).toBe('1');
    expect(plan(input(want({}, 'h2'), actual)).want).toBe('2');
  });

  it('scales when only replicas change', () => {
    const actual = { installed: ['2'], current: '2', servingVersion: '2', running: { version: '2', replicas: 1 }, present: true };
    expect(plan(input(want({ replicas: 3 }), actual)).steps).toEqual([{ kind: 'start', version: '2', replicas: 3 }]);
  });

  it('delivers only (no start) when serving is off', () => {
    expect(kinds(plan(input(want(), { servingEnabled: false })))).toEqual(['fetch', 'install', 'switch']);
  });

  it('stops and removes a model whose spec is gone', () => {
    expect(kinds(plan(input(undefined, { running: { version: '1', replicas: 1 }, present: true })))).toEqual(['stop', 'remove']);
    expect(plan(input(undefined, {})).steps).toEqual([]);
  });

  it('removes local deployment of an image spec and says it is not the agent\'s', () => {
    const p = plan(input(want({ image: 'registry/model:1' }), { present: true, installed: ['1'] }));
    expect(p.steps).toEqual([{ kind: 'remove' }]);
    expect(p.refusal?.reason).toBe('ImageNotForAgent');
  });

  it('refuses a spec whose target is missing or has no digest', () => {
    expect(plan(input(want({ targetVersion: '7' }))).refusal?.reason).toBe('TargetVersionNotInManifest');
    const noDigest = { spec: InferenceModelSpecSchema.parse({ modelName: 'm', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: 'http://x/1' }] }), specHash: 'h', generation: 1 };
    expect(plan(input(noDigest)).refusal?.reason).toBe('MissingDigest');
    expect(kinds(plan({ ...input(noDigest), allowUnverified: true }))).toEqual(['fetch', 'install', 'start', 'switch']);
  });

  it('switches the link when it disagrees with the database after a crash mid-switch', () => {
    const actual = { installed: ['1', '2'], current: '2', servingVersion: '1', running: { version: '2', replicas: 1 }, present: true };
    expect(plan(input(want(), actual)).steps).toEqual([{ kind: 'switch', version: '2' }]);
  });
});
