// The rollout's progress that cannot be derived from the resource and the node reports: it lives
// in status.rollout and is read back after a restart or a leader change.

export type RolloutState = 'Progressing' | 'Paused' | 'Aborted' | 'Complete';

export interface RolloutStatus {
  /** Hash of manifest, targetVersion and image (revision.ts): a new one starts a new rollout. */
  revision: string;
  state: RolloutState;
  /** 1-based number of the batch in progress (batches before it are done). */
  batch: number;
  batches: number;
  /** The version unreached nodes keep (absent: none known). */
  fromVersion?: string;
  toVersion?: string;
  batchStartTime?: string;
  /** When the current batch was done and the pause after it began. */
  pauseStartTime?: string;
  reason?: string;
  message?: string;
  /** Counts of the current batch. */
  batchNodes?: number;
  batchServing?: number;
  batchFailed?: number;
  batchDeferred?: number;
  /** How many of the current batch's nodes, in batch order, were sent toVersion (window.ts). */
  batchReached?: number;
  /** Of them, how many neither serve it nor are Failed or Deferred on it (at most maxUnavailable). */
  batchInFlight?: number;
  /** How many nodes, in the order of all batches, were sent toVersion (the batches before, then batchReached). */
  reachedNodes?: number;
  /**
   * Earlier rollouts of the resource that a new revision overtook unfinished, newest first: the
   * first `nodes` nodes in batch order serve `version`, but for `except`. What an unreached node is
   * sent when no report says what it serves (a restarted controller, a new leader), instead of
   * fromVersion.
   */
  earlier?: EarlierRollout[];
}

export interface EarlierRollout {
  version: string;
  nodes: number;
  /** Of those nodes, the ones that did not serve it when the new revision started (failed, still updating). */
  except?: string[];
}

/** At most this many earlier rollouts are kept in status.rollout.earlier. */
export const EARLIER_MAX = 4;
/** An earlier rollout with more exceptions than this is not kept (status stays bounded). */
export const EARLIER_EXCEPT_MAX = 50;

export function readRolloutStatus(v: unknown): RolloutStatus | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const r = v as Partial<RolloutStatus>;
  if (typeof r.revision !== 'string' || typeof r.batch !== 'number' || typeof r.state !== 'string') return undefined;
  return { ...r, batches: r.batches ?? 0 } as RolloutStatus;
}

/** Every field of status.rollout (the status writer clears the ones a state leaves out). */
export const ROLLOUT_FIELDS = ['revision', 'state', 'batch', 'batches', 'fromVersion', 'toVersion', 'batchStartTime', 'pauseStartTime', 'reason', 'message', 'batchNodes', 'batchServing', 'batchFailed', 'batchDeferred', 'batchReached', 'batchInFlight', 'reachedNodes', 'earlier'] as const satisfies ReadonlyArray<keyof RolloutStatus>;
