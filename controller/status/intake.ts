import type { StatusContent } from '../../shared/index.js';

// Node reports kept per resource and node. Delivery is at least once, so reports are deduplicated
// by msg_id; a report about an older generation (or an older incarnation of the same name) than
// the one already held is ignored (removals excepted), since status arrives in order per node but generations can
// overtake each other across a reconnect. Within a generation, a report stamped earlier than the
// one held is ignored too: a resent status must not overtake a newer one.

export type IntakeResult = 'accepted' | 'duplicate' | 'stale';

export class StatusIntake {
  private readonly seen = new Map<string, true>();
  private readonly byModel = new Map<string, Map<string, StatusContent>>();

  constructor(private readonly maxIds = 100_000) {}

  accept(msgId: string, report: StatusContent, currentUid?: string): IntakeResult {
    if (this.seen.has(msgId)) return 'duplicate';
    this.seen.set(msgId, true);
    if (this.seen.size > this.maxIds) this.seen.delete(this.seen.keys().next().value as string);
    if (currentUid && report.uid && report.uid !== currentUid) return 'stale';
    const key = `${report.namespace}/${report.name}`;
    let nodes = this.byModel.get(key);
    const prev = nodes?.get(report.node);
    // A removal answers a delete, which carries no generation (agents report 0): not stale.
    const removal = report.phase === 'Deleting' || report.phase === 'Deleted';
    if (prev && !removal && report.observedGeneration < prev.observedGeneration && (!report.uid || report.uid === prev.uid)) return 'stale';
    // A status sent again (no ack came in time) can arrive after a newer one of the same
    // generation: the node's own clock, which stamped both, says which is older.
    if (prev && report.observedGeneration === prev.observedGeneration && (!report.uid || report.uid === prev.uid) && Date.parse(report.time) < Date.parse(prev.time)) return 'stale';
    if (!nodes) this.byModel.set(key, (nodes = new Map()));
    nodes.set(report.node, report);
    return 'accepted';
  }

  reports(key: string): Map<string, StatusContent> {
    return this.byModel.get(key) ?? new Map();
  }

  forget(key: string): void {
    this.byModel.delete(key);
  }
}
