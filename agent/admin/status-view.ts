import { DNS_LABEL, type InferenceModelSpec } from '../../shared/index.js';
import { ModeldError } from '../errors.js';
import { modelStatus, type ModelStatus } from '../reconcile/model-status.js';
import type { ServingPort } from '../reconcile/serving-port.js';
import type { EventRecord } from '../store/events.js';
import type { Store } from '../store/index.js';

// What `modeld status` shows: each model's status from the one builder (reconcile/model-status.ts,
// the same the Reporter sends), plus notes only the node keeps. The same shape comes out of
// GET /v1/status and the read-only fallback.

export interface ModelStatusView extends ModelStatus {
  /** CloudOverridesLocal: a spec from the cloud replaced one applied locally. */
  note?: string;
  /** Recent events, newest first (single-model view only). */
  events?: EventRecord[];
  /** The desired spec, when there is one. */
  spec?: InferenceModelSpec;
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

function viewOf(src: StatusSource & { node: string }, namespace: string, name: string): ModelStatusView | undefined {
  const { store, serving } = src;
  const desired = store.specs.get(namespace, name);
  const model = store.models.get(namespace, name);
  const installed = store.versions.listFor(namespace, name);
  if (!desired && !model && installed.length === 0) return undefined;
  const status = modelStatus({
    node: src.node,
    namespace,
    name,
    desired,
    model,
    installed,
    serving: serving && { running: serving.state(namespace, name) },
    time: new Date().toISOString(),
  });
  const overridden =
    desired?.source === 'cloud' && store.events.recent(200, { namespace, name }).some((e) => e.kind === 'CloudOverride');
  const view: ModelStatusView = { ...status, ...(desired ? { spec: desired.spec } : {}) };
  return overridden ? { ...view, note: 'CloudOverridesLocal' } : view;
}

/** Every model with a spec or with state; with `model`, only that one (NotFound otherwise) and its events. */
export function buildStatus(
  src: StatusSource & { node: string; stateDir: string; daemon: boolean },
  model?: { namespace: string; name: string },
): StatusReport {
  const report = { daemon: src.daemon, node: src.node, stateDir: src.stateDir };
  if (model) {
    const view = viewOf(src, model.namespace, model.name);
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
    .map((k) => viewOf(src, keys.get(k)!.namespace, keys.get(k)!.name))
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
