import { describe, expect, it } from 'vitest';
import {
  compareVersions,
  makeEnvelope,
  parseMessage,
  parseStatusTopic,
  parseTopic,
  resolveTarget,
  specProblems,
  specTopic,
  statusTopic,
  syncTopic,
  InferenceModelSpecSchema,
} from '../../shared/index.js';

const sha = 'a'.repeat(64);
const spec = {
  modelName: 'resnet',
  deployToLayer: 'edge',
  manifest: [
    { version: '9', downloadURL: 'http://127.0.0.1/9.tgz', sha256sum: sha },
    { version: '10', downloadURL: 'http://127.0.0.1/10.tgz', sha256sum: sha.toUpperCase() },
  ],
};

describe('InferenceModel spec', () => {
  it('accepts the seed misspelling fraemworkType and writes frameworkType', () => {
    const out = InferenceModelSpecSchema.parse({ ...spec, fraemworkType: 'onnx' });
    expect(out.frameworkType).toBe('onnx');
    expect('fraemworkType' in out).toBe(false);
  });

  it('prefers frameworkType when both spellings are present', () => {
    expect(InferenceModelSpecSchema.parse({ ...spec, frameworkType: 'a', fraemworkType: 'b' }).frameworkType).toBe('a');
  });

  it('rejects a rollout amount with both count and percent, and a canary with both a selector and an amount, naming the field', () => {
    for (const rollout of [{ batch: { count: 1, percent: 10 } }, { failureThreshold: { count: 1, percent: 10 } }, { canary: { count: 1, percent: 10 } }, { canary: { selector: { ring: 'c' }, percent: 10 } }]) {
      const r = InferenceModelSpecSchema.safeParse({ ...spec, rollout });
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]!.path.slice(0, 2)).toEqual(['rollout', Object.keys(rollout)[0]]);
    }
    expect(InferenceModelSpecSchema.safeParse({ ...spec, rollout: { canary: { selector: { ring: 'c' } }, batch: { percent: 10 }, failureThreshold: { count: 0 } } }).success).toBe(true);
  });

  it('rejects a non-hex digest, a bad layer and a version with a slash', () => {
    expect(InferenceModelSpecSchema.safeParse({ ...spec, manifest: [{ version: '1', downloadURL: 'x', sha256sum: 'zz' }] }).success).toBe(false);
    expect(InferenceModelSpecSchema.safeParse({ ...spec, deployToLayer: 'fog' }).success).toBe(false);
    expect(InferenceModelSpecSchema.safeParse({ ...spec, manifest: [{ version: '../1', downloadURL: 'x' }] }).success).toBe(false);
  });
});

describe('target version', () => {
  it('compares integers numerically and anything else lexically', () => {
    expect(compareVersions('10', '9')).toBe(1);
    expect(compareVersions('v10', 'v9')).toBe(-1);
    expect(compareVersions('2', '2')).toBe(0);
  });

  it('picks the highest version when targetVersion is empty', () => {
    expect(resolveTarget(InferenceModelSpecSchema.parse(spec))?.version).toBe('10');
    expect(resolveTarget(InferenceModelSpecSchema.parse({ ...spec, targetVersion: '9' }))?.version).toBe('9');
  });

  it('names every inconsistency of a spec', () => {
    const bad = InferenceModelSpecSchema.parse({
      ...spec,
      targetVersion: '11',
      manifest: [...spec.manifest, { version: '9', downloadURL: 'x' }],
    });
    expect(specProblems(bad, { requireDigest: true }).map((p) => p.reason)).toEqual(['DuplicateVersion', 'TargetVersionNotInManifest']);
    const noDigest = InferenceModelSpecSchema.parse({ ...spec, manifest: [{ version: '1', downloadURL: 'x' }] });
    expect(specProblems(noDigest, { requireDigest: true }).map((p) => p.reason)).toEqual(['MissingDigest']);
    expect(specProblems(noDigest, { requireDigest: false })).toEqual([]);
    expect(specProblems(InferenceModelSpecSchema.parse({ ...spec, image: 'nginx' }), { requireDigest: true })).toEqual([]);
  });
});

describe('topics', () => {
  it('round-trips spec, sync and status topics', () => {
    expect(parseTopic('ai/inferencemodel', specTopic('ai/inferencemodel', 'n1', 'default', 'resnet'))).toEqual({
      kind: 'spec', node: 'n1', namespace: 'default', name: 'resnet',
    });
    expect(parseTopic('ai/inferencemodel', syncTopic('ai/inferencemodel', 'n1'))).toEqual({ kind: 'sync', node: 'n1' });
    expect(parseTopic('ai/inferencemodel', 'ai/inferencemodel/n1/a/b/c')).toBeUndefined();
    expect(parseTopic('ai/inferencemodel', 'other/n1/a/b')).toBeUndefined();
    const t = statusTopic('default/ai/inferencemodel-status/{node}', 'edge-1');
    expect(parseStatusTopic('default/ai/inferencemodel-status/{node}', t)).toBe('edge-1');
  });
});

describe('parseMessage', () => {
  const good = makeEnvelope('update', { metadata: { name: 'resnet', namespace: 'default', generation: 2 }, spec: InferenceModelSpecSchema.parse(spec) }, {
    source: 'test', resource: 'default/inferencemodel/resnet',
  });

  it('accepts a valid update', () => {
    const r = parseMessage(JSON.stringify(good));
    expect(r.ok).toBe(true);
  });

  it('gives a reason for malformed, oversized, unknown and invalid messages', () => {
    expect(parseMessage('{not json')).toMatchObject({ ok: false, reason: 'BadMessage' });
    expect(parseMessage('[]')).toMatchObject({ ok: false, reason: 'BadMessage' });
    expect(parseMessage('x'.repeat(2000), 1000)).toMatchObject({ ok: false, reason: 'MessageTooLarge' });
    expect(parseMessage(JSON.stringify({ ...good, route: { ...good.route, operation: 'explode' } }))).toMatchObject({ ok: false, reason: 'UnknownOperation' });
    expect(parseMessage(JSON.stringify({ ...good, route: { ...good.route, operation: '__proto__' } }))).toMatchObject({ ok: false, reason: 'UnknownOperation' });
    const bad = parseMessage(JSON.stringify({ ...good, content: { ...good.content, spec: { ...good.content.spec, replicas: 'two' } } }));
    expect(bad).toMatchObject({ ok: false, reason: 'InvalidSpec' });
    expect(bad.ok === false && bad.message).toContain('spec.replicas');
  });
});
