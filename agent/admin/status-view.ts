import { DNS_LABEL, resolveTarget, type Phase } from '../../shared/index.js';
import { ModeldError } from '../errors.js';
import { isTreeOf } from '../install/tree-ref.js';
import { specHash } from '../reconcile/spec-hash.js';
import type { ServingPort } from '../reconcile/serving-port.js';
import type { EventRecord } from '../store/events.js';
import type { Store } from '../store/index.js';

// What `modeld status` shows, built in one place from the store (and the serving layer when the
// daemon answers). The same shape comes out of GET /v1/status and the read-only fallback.

export interface ModelStatusView {
  namespace: string;
  name: string;
  /** Where the desired spec came from; undefined when only leftovers of a removed model remain. */
  source?: 'cloud' | 'local';
  phase: Phase;
  targetVersion?: string;
  servingVersion?: string;
  previousVersion?: string;
  /** A rollback hold in force (the spec has not changed since). */
  heldVersion?: string;
  url?: string;
  replicas: number;
  readyReplicas: number;
  reason?: string;
  message?: string;
  /** The last failure under the current spec, if any. */
  lastError?: { version?: string; reason?: string; message?: string };
  /** CloudOverridesLocal: a spec from the cloud replaced one applied locally. */
  note?: string;
  generation: number;
  observedGeneration: number;
  versions: Array<{ version: string; sha256?: string; state: 'serving' | 'previous' | 'held' | 'failed' | 'installed' }>;
  updatedAt?: number;
  /** Recent events, newest first (single-model view only). */
  events?: EventRecord[];
}

export interface StatusReport {
  /** True when the daemon answered; false: read from the store, serving facts unknown. */
  daemon: boolean;
  node: string;
  stateDir: string;
  models: ModelStatusView[];
}

export interface StatusSource {
  store: Pick<Store, 'specs' | 'models' | 'versions' | 'events'>;
  serving?: Pick<ServingPort, 'state'>;
}

export function modelStatus(src: StatusSource, namespace: string, name: string): ModelStatusView | undefined {
  const { store, serving } = src;
  const desired = store.specs.get(namespace, name);
  const model = store.models.get(namespace, name);
  const installed = store.versions.listFor(namespace, name);
  if (!desired && !model && installed.length === 0) return undefined;
  const hash = desired && specHash(desired.spec);
  const target = desired && !desired.spec.image ? resolveTarget(desired.spec) : undefined;
  const held = model?.heldVersion && model.heldSpecHash === hash ? model.heldVersion : undefined;
  const heldSha256 = held ? model?.heldSha256 : undefined;
  const failed = model?.failedVersion && model.failedSpecHash === hash ? model : undefined;
  const running = serving?.state(namespace, name);
  const overridden =
    desired?.source === 'cloud' && store.events.recent(200, { namespace, name }).some((e) => e.kind === 'CloudOverride');
  return {
    namespace,
    name,
    source: desired?.source,
    phase: model?.phase ?? 'Pending',
    targetVersion: target?.version ?? desired?.spec.targetVersion,
    servingVersion: running?.version ?? model?.servingVersion,
    previousVersion: model?.previousVersion,
    heldVersion: held,
    url: running?.url,
    replicas: desired ? (desired.spec.replicas ?? 1) : 0,
    readyReplicas: running?.readyReplicas ?? 0,
    reason: model?.reason,
    message: model?.message,
    lastError: failed && { version: failed.failedVersion, reason: failed.failedReason, message: failed.failedMessage },
    note: overridden ? 'CloudOverridesLocal' : undefined,
    generation: desired?.generation ?? 0,
    observedGeneration: model?.observedGeneration ?? 0,
    versions: installed.map((v) => ({
      version: v.version,
      sha256: v.sha256,
      state:
        isTreeOf(v, model?.servingVersion, model?.servingSha256)
          ? 'serving'
          : isTreeOf(v, held, heldSha256)
            ? 'held'
            : isTreeOf(v, model?.previousVersion, model?.previousSha256)
              ? 'previous'
              : isTreeOf(v, failed?.failedVersion, failed?.failedSha256 ?? v.sha256) // a failure without a digest: every tree of its version
                ? 'failed'
                : 'installed',
    })),
    updatedAt: model?.updatedAt,
  };
}

/** Every model with a spec or with state; with `model`, only that one (NotFound otherwise) and its events. */
export function buildStatus(
  src: StatusSource & { node: string; stateDir: string; daemon: boolean },
  model?: { namespace: string; name: string },
): StatusReport {
  const report = { daemon: src.daemon, node: src.node, stateDir: src.stateDir };
  if (model) {
    const view = modelStatus(src, model.namespace, model.name);
    if (!view) throw new ModeldError('NotFound', `no model ${model.namespace}/${model.name} on this node`);
    view.events = src.store.events.recent(20, model);
    return { ...report, models: [view] };
  }
  const keys = new Map<string, { namespace: string; name: string }>();
  for (const s of src.store.specs.list()) keys.set(`${s.namespace}/${s.name}`, s);
  for (const m of src.store.models.list()) keys.set(`${m.namespace}/${m.name}`, m);
  for (const v of src.store.versions.list()) keys.set(`${v.namespace}/${v.name}`, v);
  const models = [...keys.keys()]
    .sort()
    .map((k) => modelStatus(src, keys.get(k)!.namespace, keys.get(k)!.name))
    .filter((v): v is ModelStatusView => v !== undefined);
  return { ...report, models };
}

/** "ns/name" or "name" (namespace from `defaultNamespace`) -> parts; BadRequest when malformed. */
export function parseModelRef(ref: string, defaultNamespace = 'default'): { namespace: string; name: string } {
  const parts = ref.split('/');
  const [namespace, name] = parts.length === 2 ? parts : parts.length === 1 ? [defaultNamespace, parts[0]] : [];
  if (!namespace || !name || !DNS_LABEL.test(namespace) || !DNS_LABEL.test(name)) {
    throw new ModeldError('BadRequest', `"${ref.slice(0, 100)}" is not a model reference (name or namespace/name, DNS-1123 labels)`);
  }
  return { namespace, name };
}
