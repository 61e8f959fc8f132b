import { ackTopic, makeEnvelope } from '../../shared/index.js';
import type { Transport } from '../transport/types.js';
import type { Sequencer } from '../sequence.js';
import { envelopeSigner, type EnvelopeSigner } from '../signer.js';

const UNSIGNED = envelopeSigner();

// Acks close guarantee 7 end to end: a node keeps a status in its durable outbox until the
// controller acks its msg_id. An accepted status is acked only once the status write that
// includes it has settled (the resource shows it), so a controller that dies or loses the lead
// before writing leaves the status with the node, which sends it again to the next leader.
// A status the controller discards on purpose (a duplicate already written, a stale generation,
// a model or node the cluster does not have) is acked at once.

/** Accepted statuses not yet shown in their resource: resource key -> node -> msg_ids. */
export class PendingAcks {
  private readonly byKey = new Map<string, Map<string, string[]>>();
  private readonly ids = new Set<string>();

  add(key: string, node: string, msgId: string): void {
    let nodes = this.byKey.get(key);
    if (!nodes) this.byKey.set(key, (nodes = new Map()));
    const list = nodes.get(node);
    if (list) list.push(msgId);
    else nodes.set(node, [msgId]);
    this.ids.add(msgId);
  }

  has(msgId: string): boolean {
    return this.ids.has(msgId);
  }

  /** Everything pending for the resource, removed (a write is starting). */
  take(key: string): Map<string, string[]> {
    const nodes = this.byKey.get(key) ?? new Map<string, string[]>();
    this.byKey.delete(key);
    for (const list of nodes.values()) for (const id of list) this.ids.delete(id);
    return nodes;
  }

  /** Puts back what a write that did not settle had taken. */
  restore(key: string, taken: Map<string, string[]>): void {
    for (const [node, list] of taken) for (const id of list) this.add(key, node, id);
  }

  get size(): number {
    return this.ids.size;
  }
}

/**
 * Acks waiting to go out, batched per node: every msg_id added before the node's turn comes
 * travels in one `ack` message. `schedule(node)` asks for a `flush(node)` (the work queue's
 * `ack:<node>` key: dedup, one at a time per node, rate-limited retries).
 */
export class AckSender {
  private readonly pending = new Map<string, Set<string>>();

  constructor(
    private readonly deps: { transport: Transport; topicPrefix: string; source: string; sequencer: Sequencer; signer?: EnvelopeSigner; schedule(node: string): void; onSent?(count: number): void },
  ) {}

  add(node: string, msgIds: Iterable<string>): void {
    let set = this.pending.get(node);
    if (!set) this.pending.set(node, (set = new Set()));
    for (const id of msgIds) set.add(id);
    if (set.size) this.deps.schedule(node);
    else this.pending.delete(node);
  }

  /** Sends what is pending for the node; on failure puts it back and throws (the queue retries). */
  async flush(node: string): Promise<void> {
    const set = this.pending.get(node);
    if (!set?.size) return;
    this.pending.delete(node);
    const all = [...set];
    try {
      // The ack schema caps a message at 1,000 ids.
      for (let i = 0; i < all.length; i += 1000) {
        const msgIds = all.slice(i, i + 1000);
        const env = makeEnvelope('ack', { node, msgIds }, { source: this.deps.source, resource: `node/${node}`, sequence: this.deps.sequencer.next() });
        await this.deps.transport.publish(node, ackTopic(this.deps.topicPrefix, node), (this.deps.signer ?? UNSIGNED).payload(node, env));
        this.deps.onSent?.(msgIds.length);
        all.splice(i, msgIds.length);
        i -= msgIds.length;
      }
    } catch (err) {
      // Put back without scheduling: the queue's rate-limited retry brings the node back.
      const now = this.pending.get(node) ?? new Set<string>();
      this.pending.set(node, new Set([...all, ...now]));
      throw err;
    }
  }

  pendingFor(node: string): number {
    return this.pending.get(node)?.size ?? 0;
  }
}
