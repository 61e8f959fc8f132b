import { resolveTarget, specProblems, type InferenceModelSpec, type ManifestEntry } from '../../shared/index.js';
import type { ErrorCode } from '../errors.js';
import { sameTree, type TreeRef } from '../install/tree-ref.js';

// The planner: a pure function from what is wanted and what is there to the next steps. No I/O;
// tested with plain data. The runner executes the first step and plans again, until no step is left.
//
// What is installed, serving and kept for rollback are trees: a version AND the digest of its
// archive (install/tree-ref.ts). A version is installed only when a tree with the digest the spec
// names for it is, so a version republished with other bytes is fetched, installed beside the
// serving tree and switched to like a new version.

export interface PlanInput {
  desired?: {
    spec: InferenceModelSpec;
    specHash: string;
    generation: number;
  };
  actual: {
    /** The tree `current` points at on disk. */
    current?: TreeRef;
    /** What the models row records as serving; differs from `current` only after a crash between the two writes. */
    serving?: TreeRef;
    /** What served before `serving`: the rollback tree. */
    previous?: TreeRef;
    /** A tree that failed under `failedSpecHash` (not retried until the spec changes). */
    failed?: TreeRef;
    failedSpecHash?: string;
    /** A rollback: serve this tree instead of the target while the spec hash stays `heldSpecHash`. */
    held?: TreeRef;
    heldSpecHash?: string;
    /** Trees complete under versions/, oldest first. */
    installed: TreeRef[];
    /** Digests of verified blobs in the store (only those this model's manifest names matter). */
    blobs: string[];
    /** Digests learnt by unverified downloads in this run, by downloadURL (a spec without sha256sum). */
    learnt?: Record<string, string>;
    /** What the serving layer runs for this model, if anything. Undefined when serving is off. */
    running?: { tree: TreeRef; replicas: number };
    /** Whether this node serves at all (false: deliver only, `current` is the end state). */
    servingEnabled: boolean;
    /** Something of this model exists (a row, a directory) that a removal must clear. */
    present: boolean;
    /**
     * Serving a tree other than the target's (restoring `current` after a restart, a held tree, a
     * fallback after a failure) already failed under this spec in this run: only the target's tree
     * is tried now.
     */
    restoreFailed?: boolean;
    /** A switch happened since the last gc: an older tree may have lost its protection. */
    gcDue?: boolean;
    /** A local hold (`modeld defer`) in force: fetch and install the target, but do not switch to it. */
    deferred?: boolean;
  };
  allowUnverified: boolean;
}

/**
 * Each step says what it does. Trees named by steps after an unverified fetch carry no digest
 * yet (it is learnt by the fetch); the runner runs only the first step and plans again.
 */
export type Step =
  /** Download the archive into the blob store, verifying its digest as it arrives. */
  | { kind: 'fetch'; version: string; url: string; sha256?: string }
  /** Unpack the verified archive into a new tree beside the others ('' digest: to be learnt by the fetch before it). */
  | { kind: 'install'; version: string; sha256: string }
  /** Start the tree's instances; once ready, traffic moves to them and the old ones drain and stop. */
  | { kind: 'serve'; tree: TreeRef; replicas: number }
  /** Point `current` at the tree and record it as serving (what served before becomes the rollback tree). */
  | { kind: 'point'; tree: TreeRef }
  /** Keep the store under its cap: remove trees and archives nothing protects (keepTrees). */
  | { kind: 'gc' }
  /** Stop serving the model. */
  | { kind: 'stop' }
  /** Remove the model: `current`, every tree, its rows. */
  | { kind: 'remove' };

export interface Plan {
  /** The tree this plan drives toward, when there is one. */
  want?: TreeRef;
  /** The tree the spec's target names (`want` unless a hold or a failure chose another). */
  target?: TreeRef;
  steps: Step[];
  /** Why the target cannot be reached (the spec is wrong, or not the agent's to deploy). */
  refusal?: { phase: 'Failed' | 'Pending'; reason: ErrorCode; message: string };
  /** The target failed under this spec and is not retried; `want` is what serves instead. */
  blocked?: boolean;
  /** A local hold keeps the switch to this tree (the target, installed or on its way) back. */
  deferred?: TreeRef;
}

const removeAll = (a: PlanInput['actual']): Step[] => [
  ...(a.running ? [{ kind: 'stop' } as const] : []),
  ...(a.present ? [{ kind: 'remove' } as const] : []),
];

const withGc = (a: PlanInput['actual'], steps: Step[]): Step[] => (a.gcDue ? [...steps, { kind: 'gc' }] : steps);

const isInstalled = (a: PlanInput['actual'], tree: TreeRef | undefined): boolean => a.installed.some((t) => sameTree(t, tree));

/**
 * The tree the spec names for a version: its digest. A spec without one (allowUnverified) names no
 * bytes: then what its download turned out to hash to in this run, else the newest installed tree
 * of that version, else the version alone until it is fetched.
 */
export function specTree(entry: ManifestEntry, actual: Pick<PlanInput['actual'], 'installed' | 'learnt'>): TreeRef {
  const sha256 = entry.sha256sum?.toLowerCase() ?? actual.learnt?.[entry.downloadURL];
  if (sha256) return { version: entry.version, sha256 };
  return actual.installed.filter((t) => t.version === entry.version).at(-1) ?? { version: entry.version };
}

/** A failure recorded without a digest (before digests were recorded, or unverified) blocks every tree of its version. */
const isFailed = (failed: TreeRef, tree: TreeRef) => failed.version === tree.version && (!failed.sha256 || !tree.sha256 || failed.sha256 === tree.sha256);

/**
 * The tree to drive toward: the spec's target, unless a rollback holds another one for this
 * spec, or the target failed under this very spec (not retried until the spec changes) — then
 * whatever served before it.
 */
export function chooseTree(target: ManifestEntry, input: PlanInput): { tree: TreeRef; blocked: boolean } {
  const a = input.actual;
  const hash = input.desired!.specHash;
  // Once another tree failed to serve in this run, trying it (or yet another) again would only
  // alternate between failures: the target's tree, or nothing.
  const others = !a.restoreFailed;
  const failedHere = (t: TreeRef) => a.failed !== undefined && a.failedSpecHash === hash && isFailed(a.failed, t);
  if (others && a.held && a.heldSpecHash === hash && isInstalled(a, a.held) && !failedHere(a.held)) return { tree: a.held, blocked: false };
  const wanted = specTree(target, a);
  if (failedHere(wanted)) {
    const fallback = others ? [a.serving, a.previous].find((t) => t && !failedHere(t) && isInstalled(a, t)) : undefined;
    return { tree: fallback ?? wanted, blocked: true };
  }
  return { tree: wanted, blocked: false };
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
    return { steps: withGc(actual, []), refusal: { phase: 'Failed', reason: problems[0].reason, message: problems.map((p) => p.message).join('; ') } };
  }

  const entry = resolveTarget(spec)!;
  const target = specTree(entry, actual);
  const { tree: want, blocked } = chooseTree(entry, input);
  if (blocked && sameTree(want, target)) return { want, target, steps: withGc(actual, []), blocked }; // failed, nothing to fall back to

  const steps: Step[] = [];
  const replicas = spec.replicas ?? 1;
  // After a restart nothing runs: serve what `current` holds first, then work toward the target,
  // so a long or failing download never leaves the model unserved.
  const restorable = !sameTree(actual.current, want) && isInstalled(actual, actual.current);
  if (actual.servingEnabled && !actual.running && restorable && !actual.restoreFailed) {
    steps.push({ kind: 'serve', tree: actual.current!, replicas });
  }
  // A local hold defers only the switch to the target away from a tree that can serve: recovery
  // (a rollback hold, a fallback after a failure) and a first install are not held back, nor a
  // switch whose new instances already took traffic.
  const holding =
    actual.deferred &&
    !blocked &&
    !actual.restoreFailed &&
    sameTree(want, target) &&
    isInstalled(actual, actual.current) &&
    !sameTree(actual.current, want) &&
    !(actual.servingEnabled && sameTree(actual.running?.tree, want));
  if (!isInstalled(actual, want)) {
    const wanted = spec.manifest!.find((m) => m.version === want.version);
    if (!wanted) return { want, target, steps: withGc(actual, steps), blocked };
    const sha = wanted.sha256sum?.toLowerCase();
    const learnt = sha ? undefined : actual.learnt?.[wanted.downloadURL];
    if (!(sha ?? learnt) || !actual.blobs.includes((sha ?? learnt)!)) steps.push({ kind: 'fetch', version: want.version, url: wanted.downloadURL, sha256: sha });
    // An unverified download's digest is known only once it is fetched: the next plan names it.
    steps.push({ kind: 'install', version: want.version, sha256: sha ?? learnt ?? '' });
  }
  if (holding) return { want, target, steps: withGc(actual, steps), blocked, deferred: want };
  if (actual.servingEnabled && (!sameTree(actual.running?.tree, want) || actual.running!.replicas !== replicas)) {
    steps.push({ kind: 'serve', tree: want, replicas });
  }
  if (!sameTree(actual.current, want) || !sameTree(actual.serving, want)) steps.push({ kind: 'point', tree: want });
  return { want, target, steps: withGc(actual, steps), blocked };
}

/**
 * The trees of this model that no removal may take (gc, `modeld verify`'s repair): what `current`
 * points at, what serves and runs, the rollback tree, a hold in force, and the tree the plan
 * drives toward (an install in progress).
 */
export function keepTrees(input: PlanInput): TreeRef[] {
  const a = input.actual;
  const keep = [a.current, a.serving, a.previous, a.running?.tree];
  const spec = input.desired?.spec;
  if (input.desired && !spec?.image) {
    if (a.heldSpecHash === input.desired.specHash) keep.push(a.held);
    const target = spec && resolveTarget(spec);
    if (target) keep.push(specTree(target, a), chooseTree(target, input).tree);
  }
  const out: TreeRef[] = [];
  for (const t of keep) if (t && !out.some((o) => sameTree(o, t))) out.push(t);
  return out;
}
