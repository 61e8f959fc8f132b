import { resolveTarget, specProblems, type InferenceModelSpec, type ManifestEntry } from '../../shared/index.js';
import type { ErrorCode } from '../errors.js';

// The planner: a pure function from what is wanted and what is there to the next steps. No I/O;
// tested with plain data. The runner executes the first step and plans again, until no step is left.

export interface PlanInput {
  desired?: {
    spec: InferenceModelSpec;
    specHash: string;
    generation: number;
  };
  actual: {
    /** Version `current` points at on disk. */
    current?: string;
    servingVersion?: string;
    previousVersion?: string;
    failedVersion?: string;
    failedSpecHash?: string;
    heldVersion?: string;
    heldSpecHash?: string;
    /** Versions complete under versions/. */
    installed: string[];
    /** Digests of verified blobs in the store (only those this model's manifest names matter). */
    blobs: string[];
    /** What the serving layer runs for this model, if anything. Undefined when serving is off. */
    running?: { version: string; replicas: number };
    /** Whether this node serves at all (false: deliver only, `current` is the end state). */
    servingEnabled: boolean;
    /** Something of this model exists (a row, a directory) that a removal must clear. */
    present: boolean;
    /** Restoring `current` after a restart already failed once in this run: do not try again. */
    restoreFailed?: boolean;
  };
  allowUnverified: boolean;
}

export type Step =
  | { kind: 'fetch'; version: string; url: string; sha256?: string }
  | { kind: 'install'; version: string; sha256: string }
  | { kind: 'start'; version: string; replicas: number }
  | { kind: 'switch'; version: string }
  | { kind: 'stop' }
  | { kind: 'remove' };

export interface Plan {
  /** The version this plan drives toward, when there is one. */
  want?: string;
  steps: Step[];
  /** Why the target cannot be reached (the spec is wrong, or not the agent's to deploy). */
  refusal?: { phase: 'Failed' | 'Pending'; reason: ErrorCode; message: string };
  /** The target failed under this spec and is not retried; `want` is what serves instead. */
  blocked?: boolean;
}

const removeAll = (a: PlanInput['actual']): Step[] => [
  ...(a.running ? [{ kind: 'stop' } as const] : []),
  ...(a.present ? [{ kind: 'remove' } as const] : []),
];

/**
 * The version to drive toward: the spec's target, unless a rollback holds another one for this
 * spec, or the target failed under this very spec (not retried until the spec changes) — then
 * whatever served before it.
 */
export function chooseVersion(target: ManifestEntry, input: PlanInput): { version: string; blocked: boolean } {
  const a = input.actual;
  const hash = input.desired!.specHash;
  if (a.heldVersion && a.heldSpecHash === hash && a.installed.includes(a.heldVersion)) {
    return { version: a.heldVersion, blocked: false };
  }
  if (a.failedVersion === target.version && a.failedSpecHash === hash) {
    const fallback = [a.servingVersion, a.previousVersion].find((v) => v && v !== a.failedVersion && a.installed.includes(v));
    return { version: fallback ?? target.version, blocked: true };
  }
  return { version: target.version, blocked: false };
}

export function plan(input: PlanInput): Plan {
  const { desired, actual } = input;
  if (!desired) return { steps: removeAll(actual) };

  const { spec } = desired;
  if (spec.image) {
    return {
      steps: removeAll(actual),
      refusal: { phase: 'Pending', reason: 'ImageNotForAgent', message: 'image-based specs are run by the controller as a Deployment' },
    };
  }
  const problems = specProblems(spec, { requireDigest: !input.allowUnverified });
  if (problems.length) {
    return { steps: [], refusal: { phase: 'Failed', reason: problems[0].reason, message: problems.map((p) => p.message).join('; ') } };
  }

  const target = resolveTarget(spec)!;
  const { version, blocked } = chooseVersion(target, input);
  if (blocked && version === target.version) return { want: version, steps: [], blocked }; // failed, nothing to fall back to

  const entry = spec.manifest!.find((m) => m.version === version);
  const steps: Step[] = [];
  const replicas = spec.replicas ?? 1;
  // After a restart nothing runs: serve what `current` holds first, then work toward the target,
  // so a long or failing download never leaves the model unserved.
  const restorable = actual.current !== undefined && actual.current !== version && actual.installed.includes(actual.current);
  if (actual.servingEnabled && !actual.running && restorable && !actual.restoreFailed) {
    steps.push({ kind: 'start', version: actual.current!, replicas });
  }
  if (!actual.installed.includes(version)) {
    if (!entry) return { want: version, steps: [], blocked };
    const sha = entry.sha256sum?.toLowerCase();
    if (!sha || !actual.blobs.includes(sha)) steps.push({ kind: 'fetch', version, url: entry.downloadURL, sha256: sha });
    // An unverified download's digest is known only after the fetch; the runner fills it in.
    steps.push({ kind: 'install', version, sha256: sha ?? '' });
  }
  if (actual.servingEnabled && (actual.running?.version !== version || actual.running.replicas !== replicas)) {
    steps.push({ kind: 'start', version, replicas });
  }
  if (actual.current !== version || actual.servingVersion !== version) steps.push({ kind: 'switch', version });
  return { want: version, steps, blocked };
}
