import { makeEnvelope, resourcePath, statusTopic, type Phase, type StatusContent } from '../../shared/index.js';
import type { Config } from '../config/schema.js';
import type { StatusReason } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import { modelStatus, toStatusContent } from './model-status.js';
import type { ServingPort } from './serving-port.js';
import { statusTime } from './status-time.js';

export interface StatusUpdate {
  phase: Phase;
  reason?: StatusReason;
  message?: string;
  progress?: { bytes: number; totalBytes?: number };
  /** Answers this message instead of the stored spec's (a rejected message). */
  parentMsgId?: string;
  observedGeneration?: number;
  /** The version the step reporting works on (the log line). The status's targetVersion is always the spec's. */
  version?: string;
  /** @deprecated the same as `version` (call sites from before the status had one builder). */
  targetVersion?: string;
}

/**
 * Records one model's status change (models row, event history), builds its status
 * (model-status.ts, the one builder, shared with `modeld status`) and puts it in the outbox.
 */
export class Reporter {
  constructor(
    private readonly deps: {
      config: Config;
      store: Store;
      log: Logger;
      serving?: ServingPort;
      /** msgId and key: kept until the controller acks msgId; key is the model (`ns/name`). */
      enqueue: (topic: string, payload: string, opts?: { msgId: string; key: string }) => void;
      /** Every status made (metrics). Must not throw. */
      onReport?: (status: StatusContent) => void;
      /** Whether the broker is there: progress made while it is not would only pile up, stale, in the outbox. */
      online?: () => boolean;
    },
  ) {}

  report(namespace: string, name: string, update: StatusUpdate): StatusContent {
    // One transaction: a kill -9 between recording the phase and queueing its status would leave
    // a row that says "reported" and no status on the way (guarantee 7).
    const status = this.deps.store.db.transaction(() => this.record(namespace, name, update))();
    this.deps.onReport?.(status);
    return status;
  }

  private record(namespace: string, name: string, update: StatusUpdate): StatusContent {
    const { config, store, serving } = this.deps;
    const desired = store.specs.get(namespace, name);
    const refusal = update.parentMsgId !== undefined; // a rejected message changes no state
    const model = refusal
      ? store.models.get(namespace, name)
      : store.models.update(namespace, name, {
          phase: update.phase,
          reason: update.reason,
          message: update.message,
          observedGeneration: desired?.generation ?? 0,
        });
    const status = toStatusContent(
      modelStatus({
        node: config.node.name,
        namespace,
        name,
        desired,
        model,
        installed: store.versions.listFor(namespace, name),
        serving: serving && { running: serving.state(namespace, name) },
        answer: refusal ? { phase: update.phase, reason: update.reason, message: update.message, observedGeneration: update.observedGeneration } : undefined,
        progress: update.progress,
        time: statusTime(),
      }),
    );
    const envelope = makeEnvelope('status', status, {
      source: `modeld/${config.node.name}`,
      resource: resourcePath(namespace, name),
      parentMsgId: update.parentMsgId ?? desired?.msgId ?? '',
      ack: true,
    });
    const progressOnly = update.phase === 'Downloading' && update.progress !== undefined;
    if (!progressOnly) {
      store.events.add({ namespace, name, kind: update.phase, message: [update.reason, update.message].filter(Boolean).join(': ') || update.phase });
    }
    const log = this.deps.log.child({ model: `${namespace}/${name}`, version: update.version ?? update.targetVersion ?? status.targetVersion });
    log[update.phase === 'Failed' ? 'warn' : progressOnly ? 'debug' : 'info'](
      { phase: update.phase, reason: update.reason, servingVersion: status.servingVersion, progress: update.progress },
      update.message ?? `phase ${update.phase}`,
    );
    // Phase changes are always kept; byte progress only while someone can hear it.
    if (!progressOnly || (this.deps.online?.() ?? true)) {
      this.deps.enqueue(statusTopic(config.topics.status, config.node.name), JSON.stringify(envelope), { msgId: envelope.header.msg_id, key: `${namespace}/${name}` });
    }
    return status;
  }
}
