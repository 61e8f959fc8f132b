import { describe, expect, it } from 'vitest';
import { InferenceModelSpecSchema } from '../../shared/index.js';
import { plan, type PlanInput } from '../../agent/reconcile/plan.js';
import { deferralDeadline, parseDuration, parseRfc3339 } from '../../agent/reconcile/deferral-time.js';

// A local hold (`modeld defer`) in the pure planner and the pure deadline arithmetic.

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const v1 = { version: '1', sha256: A };
const v2 = { version: '2', sha256: B };
const desired = {
  spec: InferenceModelSpecSchema.parse({
    modelName: 'm',
    deployToLayer: 'edge',
    manifest: [
      { version: '1', downloadURL: 'http://127.0.0.1/1.tgz', sha256sum: A },
      { version: '2', downloadURL: 'http://127.0.0.1/2.tgz', sha256sum: B },
    ],
  }),
  specHash: 'h',
  generation: 2,
};
const input = (actual: Partial<PlanInput['actual']>): PlanInput => ({
  desired,
  actual: { installed: [v1], blobs: [], servingEnabled: true, present: true, current: v1, serving: v1, running: { tree: v1, replicas: 1 }, deferred: true, ...actual },
  allowUnverified: false,
});
const kinds = (p: ReturnType<typeof plan>) => p.steps.map((s) => s.kind);

describe('planner under a local hold', () => {
  it('fetches and installs the new target but does not switch to it', () => {
    const p = plan(input({}));
    expect(kinds(p)).toEqual(['fetch', 'install']);
    expect(p.deferred).toEqual(v2);
  });

  it('once the target is installed, has nothing left to do and says the switch is deferred', () => {
    const p = plan(input({ installed: [v1, v2] }));
    expect(p.steps).toEqual([]);
    expect(p.deferred).toEqual(v2);
  });

  it('without a hold, switches as usual', () => {
    expect(kinds(plan(input({ installed: [v1, v2], deferred: false })))).toEqual(['serve', 'point']);
  });

  it('restores the serving of the old tree after a restart, and still defers the switch', () => {
    const p = plan(input({ installed: [v1, v2], running: undefined }));
    expect(p.steps).toEqual([{ kind: 'serve', tree: v1, replicas: 1 }]);
    expect(p.deferred).toEqual(v2);
  });

  it('does not hold back a first install (nothing serves to keep)', () => {
    const p = plan(input({ installed: [], current: undefined, serving: undefined, running: undefined, present: false }));
    expect(kinds(p)).toEqual(['fetch', 'install', 'serve', 'point']);
    expect(p.deferred).toBeUndefined();
  });

  it('finishes a switch whose new instances already took traffic', () => {
    expect(kinds(plan(input({ installed: [v1, v2], running: { tree: v2, replicas: 1 } })))).toEqual(['point']);
  });

  it('on a delivery-only node, holds the pointer switch', () => {
    const p = plan(input({ installed: [v1, v2], running: undefined, servingEnabled: false }));
    expect(p.steps).toEqual([]);
    expect(p.deferred).toEqual(v2);
  });
});

describe('deferral deadline', () => {
  const now = Date.parse('2026-12-02T12:00:00Z');
  it('parses RFC 3339 times and durations, refuses the malformed', () => {
    expect(parseRfc3339('2026-12-02T13:00:00Z')).toBe(now + 3_600_000);
    expect(parseRfc3339('2026-12-02T14:00:00+01:00')).toBe(now + 3_600_000);
    expect(parseRfc3339('2026-12-02 13:00')).toBeUndefined();
    expect(parseRfc3339('tomorrow')).toBeUndefined();
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('30')).toBeUndefined();
    expect(parseDuration('-5m')).toBeUndefined();
  });

  it('defaults to the cap, refuses past times and requests over the cap', () => {
    expect(deferralDeadline({}, now, 3600)).toEqual({ until: now + 3_600_000, since: now });
    expect(deferralDeadline({ for: '30m' }, now, 3600)).toEqual({ until: now + 1_800_000, since: now });
    expect(() => deferralDeadline({ until: '2026-12-02T11:00:00Z' }, now, 3600)).toThrow(expect.objectContaining({ code: 'BadRequest' }));
    expect(() => deferralDeadline({ for: '2h' }, now, 3600)).toThrow(expect.objectContaining({ code: 'DeferralTooLong' }));
    expect(() => deferralDeadline({ for: '1m', until: '2026-12-02T13:00:00Z' }, now, 3600)).toThrow(expect.objectContaining({ code: 'BadRequest' }));
  });

  it('an extension counts the cap from when the hold was first placed', () => {
    const since = now - 50 * 60_000;
    expect(deferralDeadline({ for: '10m' }, now, 3600, since)).toEqual({ until: now + 600_000, since });
    expect(() => deferralDeadline({ for: '11m' }, now, 3600, since)).toThrow(expect.objectContaining({ code: 'DeferralTooLong' }));
  });
});
