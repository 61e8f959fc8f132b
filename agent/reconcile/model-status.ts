import { resolveTarget, type Phase, type StatusContent } from '../../shared/index.js';
import type { StatusReason } from '../errors.js';
import type { ModelState } from '../store/models.js';
import type { DesiredSpec } from '../store/specs.js';
import { isTreeOf } from '../install/tree-ref.js';
import type { InstalledVersion } from '../store/versions.js';
import type { ServingPort } from './serving-port.js';
import { specHash } from './spec-hash.js';

// The one place a model's status is built, from the store's rows and what the serving layer
// says. The Reporter sends it to the cloud (its wire part); `modeld status` shows it. Pure.

export const MAX_STATUS_MESSAGE = 4096;

type Running = NonNullable<ReturnType<ServingPort['state']>>;

export interface ModelStatusInput {
  node: string;
  namespace: string;
  name: string;
  desired?: DesiredSpec;
  model?: ModelState;
  installed: InstalledVersion[];
  /**
   * The serving layer's answer for this model (`running` undefined: it routes nothing to it).
   * Absent when there is no serving layer to ask (the CLI without a daemon, a delivery-only node):
   * then the recorded serving version stands.
   */
  serving?: { running?: Running };
  /**
   * This status answers one refused message: its phase, reason and generation instead of the
   * row's, which the refusal does not change.
   */
  answer?: { phase: Phase; reason?: StatusReason; message?: string; observedGeneration?: number };
  /** Byte progress of the download under way (statuses only; not recorded). */
  progress?: StatusContent['progress'];
  /** ISO time of the status. */
  time: string;
}

type VersionState = 'serving' | 'previous' | 'failed' | 'installed';

/** Shaped like the wire's StatusContent, plus what only the node's own view shows. */
export interface ModelStatus extends Omit<StatusContent, 'reason' | 'versions' | 'replicas' | 'readyReplicas'> {
  reason?: StatusReason;
  replicas: number;
  readyReplicas: number;
  versions: Array<{ version: string; sha256sum?: string; state: VersionState }>;
  /** A rollback hold in force: made under the current spec, on an installed version. */
  heldVersion?: string;
  /** A local hold on the switch in force (`modeld defer`), RFC 3339; on the wire only with phase Deferred. */
  deferredUntil?: string;
  // What only `modeld status` shows (not sent: see toStatusContent).
  /** Where the desired spec came from; undefined when only leftovers of a removed model remain. */
  source?: 'cloud' | 'local';
  generation: number;
  previousVersion?: string;
  /** The failure under the current spec, if any. */
  lastError?: { version: string; reason?: StatusReason; message?: string };
  updatedAt?: number;
}

export function modelStatus(input: ModelStatusInput): ModelStatus {
  const { desired, model, installed, answer } = input;
  const hash = desired && specHash(desired.spec);
  const target = desired && !desired.spec.image ? resolveTarget(desired.spec) : undefined;
  // Trees are (version, digest): a version republished with other bytes is another tree.
  const has = (v: string, sha?: string) => installed.some((i) => isTreeOf(i, v, sha));
  // A hold or a failure lasts while the spec it was made under is the spec: a new spec ends the
  // hold and tries the failed version again (plan.chooseVersion decides the same way).
  const heldVersion = model?.heldVersion && model.heldSpecHash === hash && has(model.heldVersion, model.heldSha256) ? model.heldVersion : undefined;
  const failedVersion = model?.failedVersion && model.failedSpecHash === hash ? model.failedVersion : undefined;
  const running = input.serving?.running;
  // With a serving layer, what it routes requests to; the row only says what was switched to last.
  const servingVersion = input.serving ? running?.version : model?.servingVersion;
  const servingSha256 = input.serving ? running?.sha256 : model?.servingSha256;
  const message = answer ? answer.message : model?.message;
  const now = Date.parse(input.time);
  const deferredUntil = model?.deferredUntil !== undefined && !(model.deferredUntil <= now) ? new Date(model.deferredUntil).toISOString() : undefined;
  return {
    node: input.node,
    namespace: input.namespace,
    name: input.name,
    uid: desired?.uid,
    observedGeneration: answer?.observedGeneration ?? model?.observedGeneration ?? 0,
    phase: answer?.phase ?? model?.phase ?? 'Pending',
    targetVersion: target?.version ?? desired?.spec.targetVersion,
    servingVersion,
    heldVersion,
    deferredUntil,
    url: running?.url,
    replicas: desired ? (desired.spec.replicas ?? 1) : 0,
    readyReplicas: running?.readyReplicas ?? 0,
    ...(running?.backend ? { backend: running.backend } : {}),
    progress: input.progress,
    reason: answer ? answer.reason : model?.reason,
    message: message?.slice(0, MAX_STATUS_MESSAGE),
    versions: installed.map((v) => ({
      version: v.version,
      sha256sum: v.sha256,
      state: isTreeOf(v, servingVersion, servingSha256)
        ? 'serving'
        : isTreeOf(v, model?.previousVersion, model?.previousSha256)
          ? 'previous'
          : isTreeOf(v, failedVersion, model?.failedSha256 ?? v.sha256) // a failure without a digest: every tree of its version
            ? 'failed'
            : 'installed',
    })),
    time: input.time,
    source: desired?.source,
    generation: desired?.generation ?? 0,
    previousVersion: model?.previousVersion,
    lastError: failedVersion ? { version: failedVersion, reason: model?.failedReason, message: model?.failedMessage } : undefined,
    updatedAt: model?.updatedAt,
  };
}

/** The part of a status that goes on the wire. */
export function toStatusContent(s: ModelStatus): StatusContent {
  return {
    node: s.node,
    namespace: s.namespace,
    name: s.name,
    uid: s.uid,
    observedGeneration: s.observedGeneration,
    phase: s.phase,
    targetVersion: s.targetVersion,
    servingVersion: s.servingVersion,
    heldVersion: s.heldVersion,
    ...(s.phase === 'Deferred' && s.deferredUntil ? { deferredUntil: s.deferredUntil } : {}),
    url: s.url,
    replicas: s.replicas,
    readyReplicas: s.readyReplicas,
    ...(s.backend ? { backend: s.backend } : {}),
    progress: s.progress,
    reason: s.reason,
    message: s.message,
    versions: s.versions,
    time: s.time,
  };
}
