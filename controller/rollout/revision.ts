import { createHash } from 'node:crypto';
import type { InferenceModelSpec } from '../../shared/index.js';

// Only what the nodes run starts a new rollout: manifest, targetVersion, image. The steering
// fields (paused, abort, resumeBatch) and the rest of spec.rollout do not.

export function rolloutRevision(spec: Pick<InferenceModelSpec, 'manifest' | 'targetVersion' | 'image'>): string {
  const basis = JSON.stringify([spec.manifest ?? null, spec.targetVersion ?? null, spec.image ?? null]);
  return createHash('sha256').update(basis).digest('hex').slice(0, 16);
}
