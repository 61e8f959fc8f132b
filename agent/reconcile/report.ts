import {
  makeEnvelope,
  resolveTarget,
  resourcePath,
  statusTopic,
  type Phase,
  type StatusContent,
} from '../../shared/index.js';
import type { Config } from '../config/schema.js';
import { isTreeOf } from '../install/tree-ref.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import type { ServingPort } from './serving-port.js';

export interface StatusUpdate {
  phase: Phase;
  reason?: string;
  message?: string;
  progress?: { bytes: number; totalBytes?: number };
  /** Answers this message instead of the stored spec's (a rejected message). */
  parentMsgId?: string;
  observedGeneration?: number;
  targetVersion?: string;
}

/**
 * Builds one model's status from the store and the serving layer, records it (models row, event
 * history) and puts it in the outbox. The only place statuses are made.
 */
export class Reporter {
  constructor(
    private readonly deps: {
      config: Config;
      store: Store;
      log: Logger;
      serving?: ServingPort;
      enqueue: (topic: string, payload: string) => void;
      /** Every status made (metrics). Must not throw. */
      onReport?: (status: StatusContent) => void;
      /** Whether the broker is there: progress made while it is not would only pile up, stale, in the outbox. */
      online?: () => boolean;
    },
  ) {}

  report(namespace: string, name: string, update: StatusUpdate): StatusContent {
    const { config, store, serving } = this.deps;
    const desired = store.specs.get(namespace, name);
    const keepsState = update.parentMsgId === undefined; // a rejected message changes no state
    const model = keepsState
      ? store.models.update(namespace, name, {
          phase: update.phase,
          reason: update.reason,
          message: update.message,
          observedGeneration: desired?.generation ?? 0,
        })
      : store.models.get(namespace, name);
    const running = serving?.state(namespace, name);
    const installed = store.versions.listFor(namespace, name);
    const target = desired && !desired.spec.image ? resolveTarget(desired.spec) : undefined;
    const status: StatusContent = {
      node: config.node.name,
      namespace,
      name,
      uid: desired?.uid,
      observedGeneration: update.observedGeneration ?? desired?.generation ?? 0,
      phase: update.phase,
      targetVersion: update.targetVersion ?? target?.version ?? desired?.spec.targetVersion,
      servingVersion: model?.servingVersion,
      url: running?.url,
      replicas: desired ? (desired.spec.replicas ?? 1) : 0,
      readyReplicas: running?.readyReplicas ?? 0,
      progress: update.progress,
      reason: update.reason,
      message: update.message?.slice(0, 4096),
      versions: installed.map((v) => ({
        version: v.version,
        sha256sum: v.sha256,
        state:
          isTreeOf(v, model?.servingVersion, model?.servingSha256)
            ? 'serving'
            : isTreeOf(v, model?.previousVersion, model?.previousSha256)
              ? 'previous'
              : isTreeOf(v, model?.failedVersion, model?.failedSha256 ?? v.sha256) // a failure without a digest: every tree of its version
                ? 'failed'
                : 'installed',
      })),
      time: new Date().toISOString(),
    };
    const envelope = makeEnvelope('status', status, {
      source: `modeld/${config.node.name}`,
      resource: resourcePath(namespace, name),
      parentMsgId: update.parentMsgId ?? desired?.msgId ?? '',
    });
    const progressOnly = update.phase === 'Downloading' && update.progress !== undefined;
    if (!progressOnly) {
      store.events.add({ namespace, name, kind: update.phase, message: [update.reason, update.message].filter(Boolean).join(': ') || update.phase });
    }
    const log = this.deps.log.child({ model: `${namespace}/${name}`, version: status.targetVersion });
    log[update.phase === 'Failed' ? 'warn' : progressOnly ? 'debug' : 'info'](
      { phase: update.phase, reason: update.reason, servingVersion: status.servingVersion, progress: update.progress },
      update.message ?? `phase ${update.phase}`,
    );
    // Phase changes are always kept; byte progress only while someone can hear it.
    if (!progressOnly || (this.deps.online?.() ?? true)) {
      this.deps.enqueue(statusTopic(config.topics.status, config.node.name), JSON.stringify(envelope));
    }
    this.deps.onReport?.(status);
    return status;
  }
}
