import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, InferenceModelSpecSchema, PLURAL } from '../shared/index.js';
import { sleep } from '../shared/sleep.js';
import { computeDesired, type Desired } from './desired.js';
import { ImageDeployments } from './image/reconcile.js';
import { MANAGED_BY, workloadName } from './image/resources.js';
import { NodeMessages } from './inbound.js';
import { EventRecorder, modelReference } from './kube/events.js';
import { createInformer, type Informer } from './kube/informer.js';
import type { KubeRest } from './kube/rest.js';
import { objectKey, type KubeObject } from './kube/types.js';
import type { Metrics } from './metrics.js';
import { nodeLayer } from './placement.js';
import { NodeSends } from './sends.js';
import { AckSender, PendingAcks } from './status/acks.js';
import { nodeDetails, type NodeStatus } from './status/aggregate.js';
import { computeStatus } from './status/compute.js';
import { StatusIntake } from './status/intake.js';
import { StatusWriter } from './status/writer.js';
import type { Transport } from './transport/types.js';
import { Sequencer } from './sequence.js';
import { envelopeSigner } from './signer.js';
import type { KeyObject } from 'node:crypto';
import { applyRollouts, type RolloutPlan } from './rollout/apply.js';
import { rolloutEvents } from './rollout/events.js';
import type { RolloutStatus } from './rollout/types.js';
import { DEFAULT_RATE_LIMIT, WorkQueue, runWorkers, type RateLimitOptions } from './workqueue.js';

// The controller, built like a Kubernetes controller: informers fill caches and put keys on one
// rate-limited work queue (workqueue.ts); workers take keys one at a time per key:
//   plan             compute what every node should hold and send it to every node (sends.ts),
//                    queue the image resources that need work, mark statuses
//   node:<name>      a node whose sends failed, retried on its own with backoff (sends.ts)
//   image:<ns/name>  the Deployment and Service of an image resource (image/reconcile.ts)
//   ack:<node>       acks of statuses back to a node (status/acks.ts)
// Inbound node messages are handled as they arrive (inbound.ts); status writes are coalesced per
// resource (status/writer.ts, status/compute.ts). Planning is pure (desired.ts, plan.ts,
// status/aggregate.ts).

export interface ControllerOptions {
  topicPrefix: string;
  statusTopic: string;
  edgeLabel: string;
  requireDigest: boolean;
  syncIntervalMs: number;
  statusIntervalMs: number;
  maxMessageBytes?: number;
  source?: string;
  /** Upper bound on the per-key backoff of failed work (sends, images, acks). */
  retryMaxMs?: number;
  /** First per-key backoff (doubling from there). */
  retryBaseMs?: number;
  /** Workers taking keys off the queue. */
  workers?: number;
  /** Ed25519 private key: every message to a node is signed with it (issue 14). */
  signingKey?: KeyObject;
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
const PLAN = 'plan';

export class Controller {
  private readonly models: Informer<KubeObject>;
  private readonly nodes: Informer<KubeObject>;
  private readonly deployments: Informer<KubeObject>;
  private readonly intake = new StatusIntake();
  private readonly pending = new PendingAcks();
  private readonly sequencer = new Sequencer();
  readonly writer: StatusWriter;
  private readonly events: EventRecorder;
  private readonly queue: WorkQueue;
  private readonly sends: NodeSends;
  private readonly images: ImageDeployments;
  private readonly acks: AckSender;
  private readonly inbound: NodeMessages;
  /** Nodes whose agent said hello or announced presence. */
  private readonly agentNodes = new Set<string>();
  /** Nodes whose retained presence says offline (node -> why), shown on the resources they serve. */
  private readonly offline = new Map<string, string>();
  private desired: Desired = { perNode: new Map(), verdicts: new Map() };
  private readonly verdictSigs = new Map<string, string>();
  /** Staged rollouts: the state computed last per resource (uid-checked), and a timer for pauses and deadlines. */
  private rollouts = new Map<string, RolloutStatus>();
  private readonly rolloutUids = new Map<string, string | undefined>();
  private rolloutTimer: NodeJS.Timeout | undefined;
  private workers: Promise<void> | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private started = false;

  constructor(
    private readonly opts: ControllerOptions,
    private readonly deps: ControllerDeps,
  ) {
    const { kc, rest, log, metrics, transport } = deps;
    const source = opts.source ?? 'modeld-controller';
    const limits: RateLimitOptions = { ...DEFAULT_RATE_LIMIT, baseDelayMs: opts.retryBaseMs ?? DEFAULT_RATE_LIMIT.baseDelayMs, maxDelayMs: opts.retryMaxMs ?? 30_000 };
    this.queue = new WorkQueue(limits);
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
          this.images.forget(key);
          this.verdictSigs.delete(key);
          this.pending.take(key).forEach((ids, node) => this.acks.add(node, ids));
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
    this.events = new EventRecorder({ rest, log, component: source });
    const signer = envelopeSigner(opts.signingKey);
    this.sends = new NodeSends({
      topicPrefix: opts.topicPrefix,
      source,
      signer,
      transport,
      sequencer: this.sequencer,
      log,
      metrics,
      events: this.events,
      nodeKnown: (n) => this.nodes.get(n) !== undefined,
      isAgentNode: (n) => this.agentNodes.has(n),
      backingOff: (n) => this.queue.numRequeues(`node:${n}`) > 0,
      onReachability: (n) => this.markNode(n),
    });
    this.images = new ImageDeployments({ rest, log, edgeLabel: opts.edgeLabel, onEnsured: (key) => this.writer.mark(key) });
    this.acks = new AckSender({ transport, topicPrefix: opts.topicPrefix, source, sequencer: this.sequencer, signer, schedule: (n) => this.queue.add(`ack:${n}`), onSent: (n) => metrics.acksSent.inc(n) });
    this.writer = new StatusWriter({
      rest,
      log,
      intervalMs: opts.statusIntervalMs,
      pathFor: modelPath,
      compute: (key) =>
        computeStatus({
          model: this.models.get(key),
          verdict: this.desired.verdicts.get(key),
          reports: this.intake.reports(key),
          deployment: this.deployments.get(`${key.split('/')[0]}/${workloadName(key.split('/')[1] ?? '')}`),
          unreachable: this.sends.unreachable,
          offline: this.offline,
          now: new Date().toISOString(),
          rollout: this.rollouts.get(key),
        }),
      onWrite: (result) => metrics.statusWrites.inc({ result }),
      begin: (key) => {
        const taken = this.pending.take(key);
        if (!taken.size) return undefined;
        return (settled) => {
          // A resource that is gone has nowhere to show a status: nothing to wait for.
          if (settled || !this.models.get(key)) taken.forEach((ids, node) => this.acks.add(node, ids));
          else this.pending.restore(key, taken);
        };
      },
    });
    this.inbound = new NodeMessages({
      topicPrefix: opts.topicPrefix,
      statusTopic: opts.statusTopic,
      maxMessageBytes: opts.maxMessageBytes,
      log,
      metrics,
      events: this.events,
      intake: this.intake,
      pending: this.pending,
      acks: this.acks,
      model: (key) => this.models.get(key),
      node: (name) => this.nodes.get(name),
      onAgent: (node, hello) => {
        this.agentNodes.add(node);
        if (!hello) return;
        if (hello.lastSequence !== undefined) this.sequencer.raise(hello.lastSequence);
        // The sync that answers echoes this hello's nonce (the node's proof that it is fresh).
        if (hello.nonce !== undefined) this.sends.helloNonces.set(node, hello.nonce);
        else this.sends.helloNonces.delete(node);
        // It is connected now: a full sync at once, whatever backoff its sends were in.
        this.sends.pendingSyncs.add(node);
        this.queue.forget(`node:${node}`);
        this.queue.add(`node:${node}`);
      },
      onPresence: (node, offline) => {
        if (offline === this.offline.get(node)) return;
        if (offline) this.offline.set(node, offline);
        else this.offline.delete(node);
        this.markNode(node);
      },
      onAccepted: (key) => {
        this.writer.mark(key);
        // A report can finish a batch or cross a failure threshold: plan again.
        const s = this.rollouts.get(key);
        if (s && (s.state === 'Progressing' || s.state === 'Paused')) this.kick();
      },
    });
  }

  /**
   * Every node's entry for one resource, from the reports in memory: the detail status.nodes no
   * longer carries (GET /status/<namespace>/<name>). Undefined when the resource is unknown.
   */
  nodeDetail(key: string): { targetNodes: number; nodes: NodeStatus[] } | undefined {
    const model = this.models.get(key);
    const verdict = this.desired.verdicts.get(key);
    if (!model) return undefined;
    const targets = verdict?.kind === 'agents' ? verdict.targets : [];
    const parsed = InferenceModelSpecSchema.safeParse(model.spec);
    const nodes = nodeDetails({ targets, reports: this.intake.reports(key), unreachable: this.sends.unreachable, offline: this.offline, now: new Date().toISOString(), spec: parsed.success ? parsed.data : undefined });
    return { targetNodes: targets.length, nodes };
  }

  /** Counters the tests read. */
  get stats() {
    return { ...this.inbound.stats, sends: this.sends.count };
  }

  /** Starts watching and talking to nodes; resolves once the caches are filled and the first full sync is out. */
  async start(): Promise<void> {
    const signal = this.abort.signal;
    await Promise.all([this.models.start(signal), this.nodes.start(signal), this.deployments.start(signal)]);
    await this.deps.transport.start((m) => this.inbound.handle(m));
    this.started = true;
    this.workers = runWorkers(this.queue, this.opts.workers ?? 8, (key) => this.work(key), (key, err, retryInMs) => {
      this.deps.metrics.retries.inc({ job: key.split(':')[0] });
      this.deps.log.warn({ key, retryInMs, err: (err as Error).message }, 'work failed; retrying with backoff');
    });
    // After a restart we do not know what nodes hold: a full sync tells every node its whole set
    // (and each agent answers with its full state, so statuses lost meanwhile come back).
    for (const n of this.syncCandidates()) this.sends.pendingSyncs.add(n);
    this.kick();
    await this.idle();
    this.syncTimer = setInterval(() => {
      for (const n of this.syncCandidates()) this.sends.pendingSyncs.add(n);
      this.kick();
    }, this.opts.syncIntervalMs);
    this.syncTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.abort.signal.aborted) return;
    this.abort.abort();
    clearInterval(this.syncTimer);
    clearTimeout(this.rolloutTimer);
    this.queue.shutDown();
    await this.workers;
    await this.writer.idle().catch(() => {});
    this.writer.stop();
    await this.deps.transport.stop();
  }

  /** Resolves when no work is queued or running (tests and start-up; backoffs are not waited for). */
  async idle(): Promise<void> {
    while (this.queue.length > 0) await sleep(5);
  }

  /** What the controller believes each node holds (tests). */
  sentTo(node: string): string[] {
    return [...(this.sends.sent.get(node)?.keys() ?? [])].sort();
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
    for (const n of this.sends.sent.keys()) out.add(n);
    for (const n of this.desired.perNode.keys()) out.add(n);
    return out;
  }

  private kick(): void {
    if (!this.started || this.abort.signal.aborted) return;
    this.queue.add(PLAN);
  }

  private async work(key: string): Promise<void> {
    if (key === PLAN) return this.plan();
    const i = key.indexOf(':');
    const [job, arg] = [key.slice(0, i), key.slice(i + 1)];
    if (job === 'node') return this.sends.sendNode(arg, this.desired);
    if (job === 'ack') return this.acks.flush(arg);
    if (job === 'image') return this.images.reconcile(arg, this.models.get(arg), this.desired.verdicts.get(arg));
  }

  private async plan(): Promise<void> {
    // Let a burst of watch events land before planning.
    await new Promise((r) => setImmediate(r));
    const models = this.models.list();
    const nodes = this.nodes.list();
    this.deps.metrics.models.set(models.length);
    this.deps.metrics.nodes.set(nodes.length);
    const desired = computeDesired(models, nodes, { edgeLabel: this.opts.edgeLabel, requireDigest: this.opts.requireDigest });
    const uidOf = new Map(models.map((m) => [objectKey(m), m.metadata.uid]));
    const rollouts = applyRollouts(desired, {
      models,
      labelsOf: (n) => this.nodes.get(n)?.metadata.labels,
      reports: (key) => this.intake.reports(key),
      remembered: (key) => (this.rolloutUids.get(key) === uidOf.get(key) ? this.rollouts.get(key) : undefined),
      lastSent: (node, key) => this.sends.sent.get(node)?.get(key),
      now: Date.now(),
    });
    this.rollouts = rollouts.states;
    this.recordRollouts(rollouts);
    this.rolloutUids.clear();
    for (const key of rollouts.states.keys()) this.rolloutUids.set(key, uidOf.get(key));
    clearTimeout(this.rolloutTimer);
    if (rollouts.due !== undefined) {
      this.rolloutTimer = setTimeout(() => this.kick(), Math.max(0, rollouts.due - Date.now()));
      this.rolloutTimer.unref();
    }
    this.desired = desired;
    for (const node of await this.sends.sendAll(this.desired)) {
      const delay = this.queue.addRateLimited(`node:${node}`);
      this.deps.metrics.retries.inc({ job: 'node' });
      this.deps.log.debug({ node, retryInMs: delay }, 'node retried on its own');
    }
    const images = this.images.due(models, this.desired.verdicts, (key) => this.queue.numRequeues(`image:${key}`) > 0);
    for (const key of images.changed) this.queue.forget(`image:${key}`);
    for (const key of images.keys) this.queue.add(`image:${key}`);
    // A status write whenever what the controller knows about a resource changed.
    for (const model of models) {
      const key = objectKey(model);
      const sig = JSON.stringify([model.metadata.generation, this.desired.verdicts.get(key), this.rollouts.get(key)]);
      if (this.verdictSigs.get(key) !== sig) {
        this.verdictSigs.set(key, sig);
        this.writer.mark(key);
      }
    }
  }

  /**
   * Rollout steps as Events (`kubectl describe im`, `kubectl events`): only transitions, so a
   * replan writes nothing and neither does a restarted controller or a new leader, whose previous
   * state is the status.rollout it read back. Written in order, off the planning path.
   */
  private recordRollouts(plan: RolloutPlan): void {
    for (const [key, next] of plan.states) {
      const model = this.models.get(key);
      const events = rolloutEvents(plan.previous.get(key), next);
      if (!model || !events.length) continue;
      const regarding = modelReference(model);
      void (async () => {
        for (const e of events) {
          const opts = { action: 'Rollout', key: e.key, capSimilar: false, once: e.once };
          await (e.type === 'Warning' ? this.events.warning(regarding, e.reason, e.note, opts) : this.events.normal(regarding, e.reason, e.note, opts));
        }
      })();
    }
  }

  /** The resources that target a node whose reachability changed need a status write. */
  private markNode(node: string): void {
    for (const [key, v] of this.desired.verdicts) if (v.kind === 'agents' && v.targets.includes(node)) this.writer.mark(key);
  }
}
