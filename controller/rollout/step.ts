import type { RolloutSpec, StatusContent } from '../../shared/index.js';
import { amount } from './membership.js';
import { nodeState } from './node-state.js';
import { EARLIER_EXCEPT_MAX, EARLIER_MAX, type EarlierRollout, type RolloutStatus } from './types.js';
import { batchWindow, type BatchWindow } from './window.js';

export { nodeState, type NodeState } from './node-state.js';

// Pure: the rollout's state now, from the last state (status.rollout, or what this controller
// computed last), the spec, the batches and the node reports. Aborted and Complete are final for
// a revision: nothing advances them; only a new revision starts over, or clearing
// spec.rollout.abort after an abort by hand (a retry).

export interface StepInput {
  spec: RolloutSpec;
  revision: string;
  toVersion?: string;
  batches: string[][];
  reports: Map<string, StatusContent>;
  prev?: RolloutStatus;
  /** The version nodes serve when no earlier rollout says (status.servingVersion, else the most reported). */
  fallbackFrom?: string;
  now: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** How many failed nodes of a batch of `size` abort the rollout (undefined: no threshold). */
export function failureLimit(spec: RolloutSpec, size: number): number | undefined {
  const n = amount(spec.failureThreshold, size);
  return n === undefined ? undefined : Math.max(1, n);
}

export function stepRollout(i: StepInput): RolloutStatus {
  const { spec, batches, now } = i;
  let s: RolloutStatus;
  // Clearing spec.rollout.abort after an abort by hand is a retry: the same revision from batch 1.
  const retry = i.prev?.revision === i.revision && i.prev.state === 'Aborted' && i.prev.reason === 'AbortedByUser' && !spec.abort;
  if (!i.prev || i.prev.revision !== i.revision || retry) {
    const from = !i.prev ? i.fallbackFrom : retry || i.prev.state !== 'Complete' ? i.prev.fromVersion : i.prev.toVersion;
    s = { revision: i.revision, state: 'Progressing', batch: 1, batches: batches.length, toVersion: i.toVersion, batchStartTime: iso(now), batchReached: 0, reachedNodes: 0 };
    if (from !== undefined) s.fromVersion = from;
    const earlier = i.prev && !retry ? overtaken(i.prev, batches) : undefined;
    if (earlier?.length) s.earlier = earlier;
  } else s = { ...i.prev, batches: batches.length };
  const earlier = refreshEarlier(s.earlier, batches, i.reports);
  if (earlier) s.earlier = earlier;
  else delete s.earlier;
  if (s.state === 'Aborted' || s.state === 'Complete') return s;
  for (let guard = 0; guard <= batches.length + 1; guard++) {
    const members = batches[s.batch - 1] ?? [];
    const tally = { serving: 0, failed: 0, deferred: 0, pending: 0 };
    for (const n of members) tally[nodeState(i.reports.get(n), s.toVersion)]++;
    Object.assign(s, { batchNodes: members.length, batchServing: tally.serving, batchFailed: tally.failed, batchDeferred: tally.deferred });
    // The window of the batch (window.ts) goes with every state: an aborted rollout reaches no node.
    const set = (state: RolloutStatus['state'], reason: string, message: string | ((w: BatchWindow) => string)) => {
      const w = batchWindow({ members, reports: i.reports, toVersion: s.toVersion, maxUnavailable: spec.maxUnavailable, reachedBefore: s.batchReached, open: state !== 'Aborted' });
      const before = batches.slice(0, s.batch - 1).reduce((n, b) => n + b.length, 0);
      return Object.assign(s, { state, reason, message: typeof message === 'string' ? message : message(w), batchReached: w.reachedPrefix, batchInFlight: w.inFlight, reachedNodes: before + w.reachedPrefix });
    };
    if (spec.abort) return set('Aborted', 'AbortedByUser', `aborted by spec.rollout.abort in batch ${s.batch}/${s.batches}; set abort to false to start this revision again from batch 1`);
    const limit = failureLimit(spec, members.length);
    if (limit !== undefined && tally.failed >= limit) return set('Aborted', 'FailureThresholdExceeded', `${tally.failed} of ${members.length} nodes of batch ${s.batch}/${s.batches} failed (threshold ${limit})`);
    // A batch once done stays done (pauseStartTime says so): a restarted controller that has not
    // heard its nodes again yet must not take the pause after it back to Progressing.
    if ((tally.pending === 0 && tally.deferred === 0) || s.pauseStartTime !== undefined) {
      if (s.batch >= batches.length) {
        delete s.pauseStartTime;
        return set('Complete', 'RolloutComplete', `${batches.length} batches done`);
      }
      const next = s.batch + 1;
      s.pauseStartTime ??= iso(now);
      if (spec.paused) return set('Paused', 'PausedByUser', `batch ${s.batch}/${s.batches} done; spec.rollout.paused holds batch ${next}`);
      if (spec.pauseUntilResumed && (spec.resumeBatch ?? 0) < next) return set('Paused', 'AwaitingResume', `batch ${s.batch}/${s.batches} done; set spec.rollout.resumeBatch to ${next} to start the next batch`);
      const until = Date.parse(s.pauseStartTime) + (spec.pauseSeconds ?? 0) * 1000;
      if (now < until) return set('Paused', 'BatchPause', `batch ${s.batch}/${s.batches} done; batch ${next} starts at ${iso(until)}`);
      delete s.pauseStartTime;
      Object.assign(s, { batch: next, batchStartTime: iso(now), batchReached: 0 });
      continue;
    }
    if (tally.pending === 0) return set('Paused', 'NodesDeferred', `batch ${s.batch}/${s.batches} waits only on ${tally.deferred} deferred node(s)`);
    if (spec.paused) return set('Paused', 'PausedByUser', `spec.rollout.paused: batch ${s.batch}/${s.batches} finishes, no further batch starts`);
    const started = Date.parse(s.batchStartTime ?? iso(now));
    if (spec.progressDeadlineSeconds !== undefined && now - started > spec.progressDeadlineSeconds * 1000) {
      return set('Aborted', 'ProgressDeadlineExceeded', `batch ${s.batch}/${s.batches} not done ${spec.progressDeadlineSeconds}s after it started (${tally.pending} node(s) pending)`);
    }
    const window = (w: BatchWindow) => (spec.maxUnavailable === undefined ? '' : `, ${w.inFlight} in flight (maxUnavailable ${spec.maxUnavailable})`);
    return set('Progressing', 'BatchProgressing', (w) => `batch ${s.batch}/${s.batches}: ${tally.serving}/${members.length} serving ${s.toVersion}${window(w)}`);
  }
  return s;
}

/**
 * What a new revision keeps of the one it overtakes: an unfinished (Progressing or Paused) rollout
 * had sent its toVersion to the first reachedNodes nodes in batch order; those its reports do not
 * show serving it (failed, still updating) are listed apart, since the new revision sends them
 * what they serve. A Complete one left every node on its version (that is fromVersion now); an
 * Aborted one left its reached nodes on different versions (rolled back or not), which only their
 * reports tell. Too many exceptions: nothing is kept (an older entry would be wrong for them).
 */
function overtaken(prev: RolloutStatus, batches: string[][]): EarlierRollout[] | undefined {
  if (prev.state === 'Complete' || prev.state === 'Aborted' || prev.toVersion === undefined) return undefined;
  const before = batches.slice(0, prev.batch - 1).reduce((n, b) => n + b.length, 0);
  const nodes = prev.reachedNodes ?? before + (prev.batchReached ?? batches[prev.batch - 1]?.length ?? 0);
  // The exceptions come from the reports (refreshEarlier), at once and on every step after.
  return [{ version: prev.toVersion, nodes }, ...(prev.earlier ?? [])].slice(0, EARLIER_MAX);
}

/**
 * The exceptions of status.rollout.earlier follow the reports: a node of an entry's reach whose
 * report says it serves another version (it failed there, or was still updating, and the new
 * revision sent it what it served) is an exception, one that serves it is not; a node not heard
 * from stays as it was (it was sent the entry's version).
 */
function refreshEarlier(earlier: EarlierRollout[] | undefined, batches: string[][], reports: Map<string, StatusContent>): EarlierRollout[] | undefined {
  if (!earlier?.length) return undefined;
  const order = batches.flat();
  const out: EarlierRollout[] = [];
  for (const e of earlier) {
    const except = new Set(e.except ?? []);
    for (const n of order.slice(0, e.nodes)) {
      const r = reports.get(n);
      if (!r) continue;
      if (r.servingVersion === e.version) except.delete(n);
      else except.add(n);
    }
    if (except.size > EARLIER_EXCEPT_MAX) break;
    out.push({ version: e.version, nodes: e.nodes, ...(except.size ? { except: [...except] } : {}) });
  }
  return out.length ? out : undefined;
}

/** When the rollout needs another look without any event (a pause or a deadline ending), if ever. */
export function nextDue(s: RolloutStatus, spec: RolloutSpec): number | undefined {
  if (s.state === 'Paused' && s.reason === 'BatchPause' && s.pauseStartTime) return Date.parse(s.pauseStartTime) + (spec.pauseSeconds ?? 0) * 1000;
  if (s.state === 'Progressing' && spec.progressDeadlineSeconds !== undefined && s.batchStartTime) return Date.parse(s.batchStartTime) + spec.progressDeadlineSeconds * 1000 + 1;
  return undefined;
}

/**
 * The version one node is sent: reached nodes the new one; unreached nodes keep the version
 * their report says they serve, else what an overtaken rollout sent them (status.rollout.earlier,
 * by `place`: the node and its position in the order of all batches), else fromVersion (undefined:
 * whatever they were last sent). In the batch in progress a node is reached once its
 * window (window.ts) lets it in: `reached` says whether it has. After an abort, a reached node keeps the new version
 * only while it serves it (or has not reported: a restarted controller does not disturb it before
 * it hears); any other reached node goes back to the version it served, else fromVersion.
 */
export function versionFor(s: RolloutStatus, batchIndex: number, report: StatusContent | undefined, manifestVersions: Set<string>, reached = true, place?: { node: string; position: number }): string | undefined {
  const served = report?.servingVersion;
  const keeps = served !== undefined && manifestVersions.has(served) ? served : undefined;
  // An unreached node keeps what it serves: after a new targetVersion mid-rollout, the nodes the
  // last rollout reached serve its version, not fromVersion, and must not all switch back at once.
  // Without a report (a restarted controller), status.rollout.earlier says what they were sent.
  if (batchIndex >= s.batch || !reached) {
    const sent = place && s.earlier?.find((e) => place.position < e.nodes && !e.except?.includes(place.node))?.version;
    return keeps ?? (sent !== undefined && manifestVersions.has(sent) ? sent : undefined) ?? s.fromVersion;
  }
  if (s.state !== 'Aborted' || !report || nodeState(report, s.toVersion) === 'serving') return s.toVersion;
  if (keeps !== undefined && keeps !== s.toVersion) return keeps;
  return s.fromVersion ?? s.toVersion;
}
