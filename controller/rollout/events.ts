import type { RolloutStatus } from './types.js';

// Pure: the Kubernetes Events one rollout step is worth, from the state before it (what this
// controller computed last, or status.rollout read back after a restart or a leader change) and
// the state after it. Only transitions write: the same state twice writes nothing, so a replan or
// a new leader writes no line twice. One plan can cross several steps (a new revision whose first
// batch already serves); each gets its line, in order.

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  note: string;
  /** Tells apart the events of one reason on one resource (EventRecorder dedupes on it). */
  key: string;
  /**
   * The step can happen only once per key (a start, a batch, an abort, the end), so the Event may
   * be named after it and a second leader's copy refused. A pause and a resume can repeat in one batch.
   */
  once: boolean;
}

const batchesOf = (n: number) => `${n} batch${n === 1 ? '' : 'es'}`;
const versionChange = (s: RolloutStatus) => (s.fromVersion === undefined || s.fromVersion === s.toVersion ? `version ${s.toVersion ?? '?'}` : `${s.fromVersion} -> ${s.toVersion ?? '?'}`);

export function rolloutEvents(prev: RolloutStatus | undefined, next: RolloutStatus): RolloutEvent[] {
  const out: RolloutEvent[] = [];
  const rev = next.revision;
  const of = `${next.batch}/${next.batches}`;
  // The batch's start time tells apart two runs of one revision (a retry, or 1 -> 2 -> 1 -> 2:
  // the revision is a hash of what nodes run); it lives in status.rollout, so a new leader
  // computes the same key.
  const run = next.batchStartTime ? `@${next.batchStartTime}` : '';
  let before = prev;
  // Clearing spec.rollout.abort after an abort by hand starts the same revision again (step.ts).
  const retried = before?.revision === rev && before.state === 'Aborted' && next.state !== 'Aborted';
  if (!before || before.revision !== rev || retried) {
    const again = retried ? ' again (spec.rollout.abort cleared)' : '';
    out.push({ type: 'Normal', reason: 'RolloutStarted', once: true, note: `rollout ${rev} started${again}: ${versionChange(next)} in ${batchesOf(next.batches)}`, key: `${rev}${run}` });
    // Measured from a fresh start: the first batch in progress.
    before = { revision: rev, state: 'Progressing', batch: 1, batches: next.batches };
  }
  const moved = next.batch > before.batch;
  if (before.state === 'Paused' && (moved || next.state === 'Progressing')) {
    out.push({ type: 'Normal', reason: 'RolloutResumed', once: false, note: `resumed after ${before.reason ?? 'a pause'} in batch ${before.batch}/${before.batches}`, key: `${rev}/${before.batch}/${before.reason ?? ''}` });
  }
  if (moved) out.push({ type: 'Normal', reason: 'BatchStarted', once: true, note: `batch ${of} started: its nodes get ${next.toVersion ?? '?'}`, key: `${rev}/${next.batch}${run}` });
  if (next.state === 'Paused' && (before.state !== 'Paused' || moved || before.reason !== next.reason)) {
    out.push({ type: 'Normal', reason: 'RolloutPaused', once: false, note: `${next.reason}: ${next.message}`, key: `${rev}/${next.batch}/${next.reason ?? ''}` });
  }
  if (next.state === 'Aborted' && before.state !== 'Aborted') {
    const kept = next.fromVersion === undefined ? '' : `; nodes not reached keep ${next.fromVersion}`;
    out.push({ type: 'Warning', reason: 'RolloutAborted', once: true, note: `${next.reason}: ${next.message}${kept}`, key: `${rev}${run}` });
  }
  if (next.state === 'Complete' && before.state !== 'Complete') {
    out.push({ type: 'Normal', reason: 'RolloutComplete', once: true, note: `rollout ${rev} complete: ${next.toVersion ?? '?'} on every node, ${batchesOf(next.batches)} done`, key: `${rev}${run}` });
  }
  return out;
}
