import type { Logger } from 'pino';
import { makeEnvelope, resourcePath, specTopic, syncTopic } from '../shared/index.js';
import type { Desired } from './desired.js';
import type { EventRecorder } from './kube/events.js';
import type { Metrics } from './metrics.js';
import type { Sequencer } from './sequence.js';
import type { EnvelopeSigner } from './signer.js';
import { planSends, recordSent, type Send, type Sent } from './plan.js';
import { DeliveryError, type Transport } from './transport/types.js';

// The sends job: turn what each node should hold (desired) into update/delete/sync messages and
// hand them to the transport. A node whose sends fail is left to its own work-queue key
// (`node:<name>`, per-key backoff); a node the Router says cloudcore has no session for is shown
// as unreachable (status, a Warning Event, a gauge) until a send to it gets through again.

export interface SendsDeps {
  topicPrefix: string;
  source: string;
  transport: Transport;
  /** header.sequence of every message (controller/sequence.ts). */
  sequencer: Sequencer;
  /** Signs each message for its node (or leaves it unsigned): controller/signer.ts. */
  signer: EnvelopeSigner;
  log: Logger;
  metrics: Metrics;
  events: EventRecorder;
  /** Whether the cluster has a Node of that name (a sync says so: nodeKnown). */
  nodeKnown(node: string): boolean;
  /** Whether the node said hello or announced presence. */
  isAgentNode(node: string): boolean;
  /** The node is being retried on its own key: leave it out of full passes. */
  backingOff(node: string): boolean;
  /** Reachability of the node changed: its resources' statuses need a write. */
  onReachability(node: string): void;
}

export class NodeSends {
  /** node -> resource key -> what that node was last sent. */
  readonly sent: Sent = new Map();
  /** Nodes to send a full sync. */
  readonly pendingSyncs = new Set<string>();
  /** node -> why it cannot be reached (the Router's answer). */
  readonly unreachable = new Map<string, string>();
  /** node -> the nonce of its latest hello, echoed in the syncs it gets (freshness without a clock). */
  readonly helloNonces = new Map<string, string>();
  count = 0;

  constructor(private readonly deps: SendsDeps) {}

  /** One pass over every node not backing off; returns the nodes whose sends failed. */
  async sendAll(desired: Desired): Promise<string[]> {
    const syncs = [...this.pendingSyncs].filter((n) => !this.deps.backingOff(n));
    for (const n of syncs) this.pendingSyncs.delete(n);
    const sends = planSends(desired, this.sent, syncs).filter((s) => s.op === 'sync' || !this.deps.backingOff(s.node));
    const failed = new Set<string>();
    await Promise.all(
      sends.map(async (s) => {
        if (!(await this.trySend(s))) failed.add(s.node);
      }),
    );
    return [...failed];
  }

  /** Everything one node needs now; throws when any send failed (the queue backs the node off). */
  async sendNode(node: string, desired: Desired): Promise<void> {
    const sync = this.pendingSyncs.delete(node);
    const mine: Desired = { perNode: new Map(desired.perNode.has(node) ? [[node, desired.perNode.get(node)!]] : []), verdicts: desired.verdicts };
    const sent: Sent = new Map(this.sent.has(node) ? [[node, this.sent.get(node)!]] : []);
    const sends = planSends(mine, sent, sync ? [node] : []);
    let error: unknown;
    // In order, stopping at the first failure: the rest waits for the node's next turn.
    for (const s of sends) if (!(await this.trySend(s, (err) => (error = err)))) break;
    if (error) throw error;
  }

  /** Sends one message; false (and logged) when it failed and must be tried again. */
  private async trySend(s: Send, onError?: (err: unknown) => void): Promise<boolean> {
    const { transport, metrics, log } = this.deps;
    try {
      const { topic, payload } = this.message(s);
      await transport.publish(s.node, topic, payload);
      this.count++;
      metrics.messagesSent.inc({ operation: s.op });
      recordSent(this.sent, s);
      this.reachable(s.node);
      return true;
    } catch (err) {
      metrics.sendFailures.inc({ operation: s.op });
      // A Node that is gone from the cluster cannot be reached through the Router: forget it.
      if (!this.deps.nodeKnown(s.node) && !this.deps.isAgentNode(s.node)) {
        recordSent(this.sent, s.op === 'sync' ? s : { op: 'sync', node: s.node, items: new Map() });
        return true;
      }
      if (s.op === 'sync') this.pendingSyncs.add(s.node);
      if (err instanceof DeliveryError && err.nodeUnreachable) this.unreachableNow(s.node, err.message);
      log.warn({ node: s.node, op: s.op, err: (err as Error).message }, 'send failed; will retry with backoff');
      onError?.(err);
      return false;
    }
  }

  private unreachableNow(node: string, why: string): void {
    const known = this.unreachable.has(node);
    this.unreachable.set(node, `the KubeEdge Router cannot reach the node (cloudcore has no session for it): ${why}`);
    this.deps.metrics.unreachableNodes.set(this.unreachable.size);
    if (known) return;
    void this.deps.events.warning(
      { apiVersion: 'v1', kind: 'Node', name: node },
      'NodeUnreachable',
      `modeld-controller cannot deliver to node ${node}: the KubeEdge Router answered that cloudcore has no session for it (edgecore offline?). Retrying with backoff; the node's resources show it as unreachable meanwhile.`,
    );
    this.deps.onReachability(node);
  }

  private reachable(node: string): void {
    if (!this.unreachable.delete(node)) return;
    this.deps.metrics.unreachableNodes.set(this.unreachable.size);
    this.deps.log.info({ node }, 'node reachable again');
    this.deps.onReachability(node);
  }

  /** The wire message of a send. */
  message(s: Send): { topic: string; payload: string } {
    const { source, topicPrefix: prefix, signer } = this.deps;
    const sequence = this.deps.sequencer.next();
    if (s.op === 'update') {
      const { name, namespace } = s.content.metadata;
      return { topic: specTopic(prefix, s.node, namespace, name), payload: signer.payload(s.node, makeEnvelope('update', s.content, { source, resource: resourcePath(namespace, name), sequence })) };
    }
    if (s.op === 'delete') {
      const { name, namespace } = s.metadata;
      return { topic: specTopic(prefix, s.node, namespace, name), payload: signer.payload(s.node, makeEnvelope('delete', { metadata: s.metadata }, { source, resource: resourcePath(namespace, name), sequence })) };
    }
    const nonce = this.helloNonces.get(s.node);
    const content = { node: s.node, items: [...s.items.values()], nodeKnown: this.deps.nodeKnown(s.node), ...(nonce !== undefined ? { nonce } : {}) };
    return { topic: syncTopic(prefix, s.node), payload: signer.payload(s.node, makeEnvelope('sync', content, { source, resource: `${s.node}/inferencemodel/_sync`, sequence })) };
  }
}
