import type { Logger } from 'pino';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  PresenceSchema,
  parseMessage,
  parseStatusTopic,
  parseTopic,
  type HelloContent,
  type StatusContent,
} from '../shared/index.js';
import { modelReference, type EventRecorder } from './kube/events.js';
import type { KubeObject } from './kube/types.js';
import type { Metrics } from './metrics.js';
import type { AckSender, PendingAcks } from './status/acks.js';
import type { StatusIntake } from './status/intake.js';
import type { Inbound } from './transport/types.js';

// The inbound job: every message a node sends (presence, hello, status) as it arrives. A status
// is checked against its topic and the cluster, deduplicated by msg_id and kept (status/intake.ts);
// one that asked for an ack gets it once its resource shows it (status/acks.ts), or at once when
// the controller discards it on purpose.

/** At most this many names remembered for "logged once" (memory stays bounded). */
const LOGGED_ONCE_MAX = 10_000;

export interface InboundDeps {
  topicPrefix: string;
  statusTopic: string;
  maxMessageBytes?: number;
  log: Logger;
  metrics: Metrics;
  events: EventRecorder;
  intake: StatusIntake;
  pending: PendingAcks;
  acks: AckSender;
  model(key: string): KubeObject | undefined;
  node(name: string): KubeObject | undefined;
  /** A node's agent is there (hello or presence); `hello`: it asks for a full sync. */
  onAgent(node: string, hello?: HelloContent): void;
  /** Presence: `offline` is why the node is offline, undefined when it is online. */
  onPresence?(node: string, offline: string | undefined): void;
  /** A status was kept: its resource needs a status write. */
  onAccepted(key: string): void;
}

export class NodeMessages {
  readonly stats = { statusAccepted: 0, statusDropped: 0, localModelStatuses: 0 };
  private readonly loggedOnce = new Set<string>();

  constructor(private readonly deps: InboundDeps) {}

  handle(m: Inbound): void {
    const { log, metrics } = this.deps;
    const drop = (reason: string, message: string) => {
      this.stats.statusDropped++;
      metrics.inbound.inc({ result: 'dropped' });
      log.warn({ topic: m.topic, reason, message }, 'message from a node dropped');
    };
    if (m.topic) {
      const t = parseTopic(this.deps.topicPrefix, m.topic);
      if (t?.kind === 'presence') {
        const p = (() => {
          try {
            return PresenceSchema.safeParse(JSON.parse(m.payload.toString()));
          } catch {
            return undefined;
          }
        })();
        if (!p?.success) return void (m.payload.length && drop('BadMessage', 'unreadable presence'));
        if (p.data.state === 'online') this.deps.onAgent(t.node);
        this.deps.onPresence?.(t.node, p.data.state === 'online' ? undefined : `the agent's retained presence says offline${p.data.time ? ` since ${p.data.time}` : ''} (its last will: the connection was lost)`);
        return;
      }
    }
    const topicNode = m.topic ? parseStatusTopic(this.deps.statusTopic, m.topic) : undefined;
    if (m.topic && !topicNode) return drop('BadTopic', `not a status topic`);
    const parsed = parseMessage(m.payload, this.deps.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
    if (!parsed.ok) return drop(parsed.reason, parsed.message);
    const msg = parsed.message;
    if (msg.route.operation === 'hello') {
      const node = (msg.content as HelloContent).node;
      if (topicNode && topicNode !== node) return drop('NodeMismatch', `hello for ${node} on the topic of ${topicNode}`);
      metrics.inbound.inc({ result: 'hello' });
      // Its sync says nodeKnown: false, so the agent keeps what it serves; people learn of it here.
      if (!this.deps.node(node)) {
        const message = `an agent said hello as node ${node}, but the cluster has no Node of that name: it keeps serving what it has and gets no specs until its node.name matches a Node`;
        log.warn({ node }, 'hello from a node the cluster does not know');
        void this.deps.events.warning({ apiVersion: 'v1', kind: 'Node', name: node }, 'UnknownNode', message);
      }
      this.deps.onAgent(node, msg.content as HelloContent);
      return;
    }
    if (msg.route.operation !== 'status') return drop('UnexpectedOperation', `operation ${msg.route.operation} is not for the controller`);
    const report = msg.content as StatusContent;
    if (topicNode && topicNode !== report.node) return drop('NodeMismatch', `status of ${report.node} on the topic of ${topicNode}`);
    const msgId = msg.header.msg_id;
    const wantsAck = msg.header.ack === true;
    const ackNow = () => wantsAck && this.deps.acks.add(report.node, [msgId]);
    const key = `${report.namespace}/${report.name}`;
    const model = this.deps.model(key);
    // Reports about resources or nodes the cluster does not have are not kept (memory is bounded
    // by what exists; a deleted resource's late reports have nowhere to go). They are acked: the
    // node need not send them again.
    if (!model) {
      // A model applied locally on the node (`modeld apply`) reports like any other: counted, and
      // logged once per model rather than once per status.
      this.stats.localModelStatuses++;
      metrics.localModelStatuses.inc();
      metrics.inbound.inc({ result: 'local' });
      this.once(`model:${report.node}/${key}`, () => log.info({ node: report.node, model: key }, 'status of a model with no InferenceModel in the cluster (applied locally on the node?): counted in modeld_controller_local_model_statuses_total, not kept; logged once'));
      ackNow();
      return;
    }
    if (!this.deps.node(report.node)) {
      this.stats.statusDropped++;
      metrics.inbound.inc({ result: 'dropped' });
      this.once(`node:${report.node}`, () => log.warn({ node: report.node, reason: 'UnknownNode' }, `status from node ${report.node}, which the cluster has no Node of: dropped (logged once per node)`));
      ackNow();
      return;
    }
    const before = this.deps.intake.reports(key).get(report.node);
    const result = this.deps.intake.accept(msgId, report, model.metadata.uid);
    metrics.inbound.inc({ result });
    if (result === 'accepted') {
      this.stats.statusAccepted++;
      // A node that just failed is a line in `kubectl describe im` (the resource keeps counts).
      if (report.phase === 'Failed' && (before?.phase !== 'Failed' || before.targetVersion !== report.targetVersion)) {
        const what = `node ${report.node} failed${report.targetVersion ? ` version ${report.targetVersion}` : ''}: ${report.reason ?? 'Failed'}${report.message ? `: ${report.message}` : ''}`;
        void this.deps.events.warning(modelReference(model), 'NodeFailed', what, { action: 'Report', key: `${report.node}/${report.targetVersion ?? ''}` });
      }
      if (wantsAck) this.deps.pending.add(key, report.node, msgId);
      this.deps.onAccepted(key);
      return;
    }
    // A duplicate of one still waiting for its write is acked with that write.
    if (result === 'duplicate' && this.deps.pending.has(msgId)) return;
    ackNow();
  }

  private once(what: string, log: () => void): void {
    if (this.loggedOnce.has(what)) return;
    if (this.loggedOnce.size >= LOGGED_ONCE_MAX) this.loggedOnce.delete(this.loggedOnce.values().next().value as string);
    this.loggedOnce.add(what);
    log();
  }
}
