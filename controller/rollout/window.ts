import type { StatusContent } from '../../shared/index.js';
import { nodeState } from './node-state.js';

// Pure: which nodes of the batch in progress are sent the new version (toVersion) now. With
// spec.rollout.maxUnavailable at most that many of them are in flight: sent toVersion and neither
// serving it, nor Failed on it, nor Deferred on it. Failed and Deferred nodes hold no slot: both
// still serve the old version (the failure threshold deals with failures). Free slots go to the
// batch's nodes not reached yet, in the batch's (hash) order, so the nodes reached are always a
// prefix of that order; its length is kept in status.rollout.batchReached, which is what lets a
// restarted controller that has heard no report yet keep every reached node on toVersion (and count
// them in flight until they report) instead of sending them back.

export interface WindowInput {
  /** The batch's nodes in batch order. */
  members: string[];
  reports: Map<string, StatusContent>;
  toVersion?: string;
  maxUnavailable?: number;
  /** status.rollout.batchReached (absent: the whole batch, as before maxUnavailable had a window). */
  reachedBefore?: number;
  /** False once the rollout is aborted: no node is reached any more. */
  open: boolean;
}

export interface BatchWindow {
  /** Nodes of the batch sent toVersion. */
  reached: Set<string>;
  /** Length of the longest prefix of the batch (in order) all reached: the next batchReached. */
  reachedPrefix: number;
  /** Reached nodes holding a slot. */
  inFlight: number;
}

function holdsNoSlot(r: StatusContent | undefined, toVersion: string | undefined): boolean {
  const s = nodeState(r, toVersion);
  return s === 'serving' || s === 'failed' || (s === 'deferred' && (r!.targetVersion === undefined || r!.targetVersion === toVersion));
}

export function batchWindow(i: WindowInput): BatchWindow {
  const { members, reports, toVersion } = i;
  const before = Math.min(i.reachedBefore ?? members.length, members.length);
  const reached = new Set<string>();
  let inFlight = 0;
  members.forEach((n, idx) => {
    const r = reports.get(n);
    // Reached: in the recorded prefix, or a report says the node has (or had) toVersion.
    if (idx < before || holdsNoSlot(r, toVersion) || (r !== undefined && r.targetVersion === toVersion)) {
      reached.add(n);
      if (!holdsNoSlot(r, toVersion)) inFlight++;
    }
  });
  const limit = !i.open ? 0 : (i.maxUnavailable ?? Infinity);
  for (const n of members) {
    if (inFlight >= limit) break;
    if (reached.has(n)) continue;
    reached.add(n);
    inFlight++;
  }
  let reachedPrefix = before;
  while (reachedPrefix < members.length && reached.has(members[reachedPrefix])) reachedPrefix++;
  return { reached, reachedPrefix, inFlight };
}
