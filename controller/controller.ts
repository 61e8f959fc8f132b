import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import {
  API_GROUP,
  API_VERSION,
  DEFAULT_MAX_MESSAGE_BYTES,
  InferenceModelSpecSchema,
  PLURAL,
  PresenceSchema,
  makeEnvelope,
  parseMessage,
  parseStatusTopic,
  parseTopic,
  resourcePath,
  specTopic,
  syncTopic,
  type HelloContent,
  type InferenceModelSpec,
  type StatusContent,
} from '../shared/index.js';
import { computeDesired, type Desired, type Verdict } from './desired.js';
import { deleteObject, ensureObject } from './image/apply.js';
import { MANAGED_BY, ownedObjects, serviceUrl, workloadName } from './image/resources.js';
import { EventRecorder } from './kube/events.js';
import { createInformer, type Informer } from './kube/informer.js';
import type { KubeRest } from './kube/rest.js';
import { objectKey, type KubeObject } from './kube/types.js';
import type { Metrics } from './metrics.js';
import { nodeLayer } from './placement.js';
import { planSends, recordSent, type Send, type Sent } from './plan.js';
import { aggregateStatus, type Condition } from './status/aggregate.js';
import { StatusIntake } from './status/intake.js';
import { StatusWriter } from './status/writer.js';
import type { Inbound, Transport } from './transport/types.js';

// The controller's loop: watch resources and Nodes, send each node what it should hold, and
// fold what nodes report into each resource's status. Planning is pure (desired.ts, plan.ts,
// status/aggregate.ts); this file wires it to the API server and the transport.

export interface ControllerOptions {
  topicPrefix: string;
  statusTopic: string;
  edgeLabel: string;
  requireDigest: boolean;
  syncIntervalMs: number;
  statusIntervalMs: number;
  maxMessageBytes?: number;
  source?: string;
  /** Upper bound on the delay before failed sends are tried again. */
  retryMaxMs?: number;
}

export interface ControllerDeps {
  kc: KubeConfig;
  rest: KubeRest;
  transport: Transport;
  log: Logger;
  metrics: Metrics;
}

export const MODELS_PATH = `/apis/${API_GROUP}/${API_VERSION}/${PLURAL}`;
const modelPath = (key: string) => {
  const [ns, name] = key.split('/');
  return `/apis/${API_GROUP}/${API_VERSION}/namespaces/${ns}/${PLURAL}/${name}`;
};

export class Controller {
  private readonly models: Informer<KubeObject>;
  private readonly nodes: Informer<KubeObject>;
  private readonly deployments: Informer<KubeObject>;
  private readonly intake = new StatusIntake();
  readonly writer: StatusWriter;
  private readonly events: EventRecorder;
  private readonly sent: Sent = new Map();
  /** Nodes whose agent said hello or announced presence. */
  private readonly agentNodes = new Set<string>();
  private readonly pendingSyncs = new Set<string>();
  private desired: Desired = { perNode: new Map(), verdicts: new Map() };
  /** key -> hash of what the image objects were last made from */
  private readonly ensured = new Map<string, string>();
  private readonly verdictSigs = new Map<string, string>();
  private running: Promise<void> | undefined;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 500;
  private syncTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private started = false;
  readonly stats = { statusAccepted: 0, statusDropped: 0, sends: 0 };

  constructor(
    private readonly opts: ControllerOptions,
    private readonly deps: ControllerDeps,
  ) {
    const { kc, rest, log, metrics } = deps;
    const restart = (resource: string) => (reason: string) => metrics.watchRestarts.inc({ resource, reason });
    this.models = createInformer({
      kc,
      rest,
      log,
      path: MODELS_PATH,
      onRestart: restart('inferencemodels'),
      onChange: (type, obj) => {
        const key = objectKey(obj);
        if (type === 'DELETED') {
          this.intake.forget(key);
          this.writer.forget(key);
          this.ensured.delete(key);
          this.verdictSigs.delete(key);
        }
        this.kick();
      },
    });
    this.nodes = createInformer({ kc, rest, log, path: '/api/v1/nodes', onRestart: restart('nodes'), onChange: () => this.kick() });
    this.deployments = createInformer({
      kc,
      rest,
      log,
      path: '/apis/apps/v1/deployments',
      labelSelector: `app.kubernetes.io/managed-by=${MANAGED_BY}`,
      onRestart: restart('deployments'),
      onChange: (_t, obj) => {
        const owner = obj.metadata.ownerReferences?.find((o) => o.kind === 'InferenceModel');
        if (owner) this.writer.mark(`${obj.metadata.namespace}/${owner.name}`);
      },
    });
    this.events = new EventRecorder({ rest, log, component: opts.source ?? 'modeld-controller' });
    this.writer = new StatusWriter({
      rest,
      log,
      intervalMs: opts.statusIntervalMs,
      pathFor: modelPath,
      compute: (key) => this.computeStatus(key),
      onWrite: (result) => metrics.statusWrites.inc({ result }),
    });
  }

  /** Starts watching and talking to nodes; resolves once the caches are filled and the first full sync is out. */
  async start(): Promise<void> {
    const signal = this.abort.signal;
    await Promise.all([this.models.start(signal), this.nodes.start(signal), this.deployments.start(signal)]);
    await this.deps.transport.start((m) => this.onInbound(m));
    this.started = true;
    // After a restart we do not know what nodes hold: a full sync tells every node its whole set.
    for (const n of this.syncCandidates()) this.pendingSyncs.add(n);
    this.kick();
    await this.idle();
    this.syncTimer = setInterval(() => {
      for (const n of this.syncCandidates()) this.pendingSyncs.add(n);
      this.kick();
    }, this.opts.syncIntervalMs);
    this.syncTimer.unref();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.syncTimer);
    clearTimeout(this.retryTimer);
    await this.running;
    await this.writer.idle().catch(() => {});
    this.writer.stop();
    await this.deps.transport.stop();
  }

  /** Resolves when no reconcile pass is running or queued (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** What the controller believes each node holds (tests). */
  sentTo(node: string): string[] {
    return [...(this.sent.get(node)?.keys() ?? [])].sort();
  }

  ready(): boolean {
    return this.started && !this.abort.signal.aborted;
  }

  private syncCandidates(): Set<string> {
    const out = new Set<string>(this.agentNodes);
    for (const n of this.nodes.list()) {
      // Through the Router only edge nodes are reachable.
      if (this.deps.transport.name === 'mqtt' || nodeLayer(n, this.opts.edgeLabel) === 'edge') out.add(n.metadata.name);
    }
    for (const n of this.sent.keys()) out.add(n);
    for (const n of this.desired.perNode.keys()) out.add(n);
    return out;
  }

  private kick(): void {
    if (!this.started || this.abort.signal.aborted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        // Let a burst of watch events land before planning.
        await new Promise((r) => setImmediate(r));
        try {
          await this.reconcile();
        } catch (err) {
          this.deps.log.error({ err: (err as Error).message }, 'reconcile failed');
          this.scheduleRetry();
        }
      } while (this.again && !this.abort.signal.aborted);
    })().finally(() => {
      this.running = undefined;
    });
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.abort.signal.aborted) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, this.opts.retryMaxMs ?? 30_000);
  }

  private async reconcile(): Promise<void> {
    const models = this.models.list();
    const nodes = this.nodes.list();
    this.deps.metrics.models.set(models.length);
    this.deps.metrics.nodes.set(nodes.length);
    this.desired = computeDesired(models, nodes, { edgeLabel: this.opts.edgeLabel, requireDigest: this.opts.requireDigest });
    const syncs = [...this.pendingSyncs];
    this.pendingSyncs.clear();
    const sends = planSends(this.desired, this.sent, syncs);
    const clusterNodes = new Set(nodes.map((n) => n.metadata.name));
    let failed = false;
    await Promise.all(
      sends.map(async (s) => {
        try {
          await this.send(s);
          recordSent(this.sent, s);
        } catch (err) {
          this.deps.metrics.sendFailures.inc({ operation: s.op });
          // A Node that is gone from the cluster cannot be reached through the Router: forget it.
          if (!clusterNodes.has(s.node) && !this.agentNodes.has(s.node)) {
            recordSent(this.sent, s.op === 'sync' ? s : { op: 'sync', node: s.node, items: new Map() });
            return;
          }
          failed = true;
          if (s.op === 'sync') this.pendingSyncs.add(s.node);
          this.deps.log.warn({ node: s.node, op: s.op, err: (err as Error).message }, 'send failed; will retry');
        }
      }),
    );
    if (failed) this.scheduleRetry();
    else this.retryDelay = 500;
    await this.reconcileImages(models);
    // A status write whenever what the controller knows about a resource changed.
    for (const model of models) {
      const key = objectKey(model);
      const v = this.desired.verdicts.get(key);
      const sig = JSON.stringify([model.metadata.generation, v]);
      if (this.verdictSigs.get(key) !== sig) {
        this.verdictSigs.set(key, sig);
        this.writer.mark(key);
      }
    }
  }

  private async send(s: Send): Promise<void> {
    const source = this.opts.source ?? 'modeld-controller';
    const prefix = this.opts.topicPrefix;
    let topic: string;
    let envelope: unknown;
    if (s.op === 'update') {
      const { name, namespace } = s.content.metadata;
      topic = specTopic(prefix, s.node, namespace, name);
      envelope = makeEnvelope('update', s.content, { source, resource: resourcePath(namespace, name) });
    } else if (s.op === 'delete') {
      const { name, namespace } = s.metadata;
      topic = specTopic(prefix, s.node, namespace, name);
      envelope = makeEnvelope('delete', { metadata: s.metadata }, { source, resource: resourcePath(namespace, name) });
    } else {
      topic = syncTopic(prefix, s.node);
      const nodeKnown = this.nodes.get(s.node) !== undefined;
      envelope = makeEnvelope('sync', { node: s.node, items: [...s.items.values()], nodeKnown }, { source, resource: `${s.node}/inferencemodel/_sync` });
    }
    await this.deps.transport.publish(s.node, topic, JSON.stringify(envelope));
    this.stats.sends++;
    this.deps.metrics.messagesSent.inc({ operation: s.op });
  }

  private async reconcileImages(models: KubeObject[]): Promise<void> {
    const live = new Set<string>();
    for (const model of models) {
      const key = objectKey(model);
      const v = this.desired.verdicts.get(key);
      if (v?.kind !== 'image') continue;
      live.add(key);
      const spec = InferenceModelSpecSchema.parse(model.spec);
      const sig = JSON.stringify([model.metadata.uid, spec]);
      if (this.ensured.get(key) === sig) continue;
      try {
        const { deployment, service } = ownedObjects(model, spec, this.opts.edgeLabel);
        await ensureObject(this.deps.rest, deployment);
        await ensureObject(this.deps.rest, service);
        this.ensured.set(key, sig);
        this.writer.mark(key);
      } catch (err) {
        this.deps.log.warn({ model: key, err: (err as Error).message }, 'image deployment failed; will retry');
        this.scheduleRetry();
      }
    }
    // A resource that stopped using an image (but still exists) loses its Deployment and Service.
    for (const key of [...this.ensured.keys()]) {
      if (live.has(key)) continue;
      const [ns, name] = key.split('/');
      try {
        if (this.models.get(key)) {
          await deleteObject(this.deps.rest, 'Deployment', ns, workloadName(name));
          await deleteObject(this.deps.rest, 'Service', ns, workloadName(name));
        }
        this.ensured.delete(key);
      } catch (err) {
        this.deps.log.warn({ model: key, err: (err as Error).message }, 'removing image deployment failed; will retry');
        this.scheduleRetry();
      }
    }
  }

  private computeStatus(key: string): Record<string, unknown> | undefined {
    const model = this.models.get(key);
    if (!model || model.metadata.deletionTimestamp) return undefined;
    const verdict: Verdict | undefined = this.desired.verdicts.get(key);
    const parsed = InferenceModelSpecSchema.safeParse(model.spec);
    const spec: InferenceModelSpec | undefined = parsed.success ? parsed.data : undefined;
    const previous = (model.status?.conditions ?? []) as Condition[];
    const now = new Date().toISOString();
    const generation = model.metadata.generation;
    if (!verdict) return undefined;
    if (verdict.kind === 'invalid') {
      const p = verdict.problems[0];
      return { ...aggregateStatus({ generation, spec, targets: [], reports: this.intake.reports(key), problem: { reason: p.reason, message: verdict.problems.map((x) => x.message).join('; ') }, previous, now }) };
    }
    if (verdict.kind === 'image') {
      const dep = this.deployments.get(`${model.metadata.namespace}/${workloadName(model.metadata.name)}`);
      return {
        ...aggregateStatus({
          generation,
          spec,
          targets: verdict.targets,
          reports: new Map(),
          image: { url: serviceUrl(model.metadata.name, model.metadata.namespace ?? 'default'), replicas: spec?.replicas ?? 1, readyReplicas: dep?.status?.readyReplicas ?? 0 },
          previous,
          now,
        }),
      };
    }
    return { ...aggregateStatus({ generation, spec, targets: verdict.targets, reports: this.intake.reports(key), previous, now }) };
  }

  private onInbound(m: Inbound): void {
    const log = this.deps.log;
    const drop = (reason: string, message: string) => {
      this.stats.statusDropped++;
      this.deps.metrics.inbound.inc({ result: 'dropped' });
      log.warn({ topic: m.topic, reason, message }, 'message from a node dropped');
    };
    if (m.topic) {
      const t = parseTopic(this.opts.topicPrefix, m.topic);
      if (t?.kind === 'presence') {
        const p = (() => {
          try {
            return PresenceSchema.safeParse(JSON.parse(m.payload.toString()));
          } catch {
            return undefined;
          }
        })();
        if (!p?.success) return void (m.payload.length && drop('BadMessage', 'unreadable presence'));
        if (p.data.state === 'online' && !this.agentNodes.has(t.node)) this.agentNodes.add(t.node);
        return;
      }
    }
    const topicNode = m.topic ? parseStatusTopic(this.opts.statusTopic, m.topic) : undefined;
    if (m.topic && !topicNode) return drop('BadTopic', `not a status topic`);
    const parsed = parseMessage(m.payload, this.opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
    if (!parsed.ok) return drop(parsed.reason, parsed.message);
    const msg = parsed.message;
    if (msg.route.operation === 'hello') {
      const node = (msg.content as HelloContent).node;
      if (topicNode && topicNode !== node) return drop('NodeMismatch', `hello for ${node} on the topic of ${topicNode}`);
      this.agentNodes.add(node);
      this.pendingSyncs.add(node);
      this.deps.metrics.inbound.inc({ result: 'hello' });
      // Its sync says nodeKnown: false, so the agent keeps what it serves; people learn of it here.
      if (!this.nodes.get(node)) {
        const message = `an agent said hello as node ${node}, but the cluster has no Node of that name: it keeps serving what it has and gets no specs until its node.name matches a Node`;
        this.deps.log.warn({ node }, 'hello from a node the cluster does not know');
        void this.events.warning({ apiVersion: 'v1', kind: 'Node', name: node }, 'UnknownNode', message);
      }
      this.kick();
      return;
    }
    if (msg.route.operation !== 'status') return drop('UnexpectedOperation', `operation ${msg.route.operation} is not for the controller`);
    const report = msg.content as StatusContent;
    if (topicNode && topicNode !== report.node) return drop('NodeMismatch', `status of ${report.node} on the topic of ${topicNode}`);
    const key = `${report.namespace}/${report.name}`;
    const model = this.models.get(key);
    // Reports about resources or nodes the cluster does not have are not kept (memory is bounded
    // by what exists; a deleted resource's late reports have nowhere to go).
    if (!model) return drop('UnknownResource', `no InferenceModel ${key}`);
    if (!this.nodes.get(report.node)) return drop('UnknownNode', `no Node ${report.node}`);
    const result = this.intake.accept(msg.header.msg_id, report, model?.metadata.uid);
    this.deps.metrics.inbound.inc({ result });
    if (result !== 'accepted') return;
    this.stats.statusAccepted++;
    this.writer.mark(key);
  }
}
