import { resolveTarget } from '../../shared/index.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { Store } from '../store/index.js';
import { deferralDeadline, type DeferralRequest } from './deferral-time.js';

// `modeld defer`: a local hold on a model's switch. While it is in force the planner fetches and
// installs a new target but does not switch to it (plan.ts, `deferred`); the runner reports
// Deferred and kicks the model again at the deadline. The hold is the model's (not one version's):
// it lasts across spec changes and restarts (the models row) until its deadline or a release.

export interface DeferDeps {
  config: Pick<Config, 'deferral'>;
  store: Pick<Store, 'specs' | 'models' | 'events'>;
  kick(namespace: string, name: string, opts?: { cancel?: boolean }): void;
}

export interface DeferResult {
  model: string;
  /** RFC 3339: the switch waits until then at the latest. */
  deferredUntil: string;
  /** RFC 3339: when the hold was first placed (deferral.maxSeconds counts from here). */
  deferredSince: string;
  /** The cap, deferral.maxSeconds. */
  maxSeconds: number;
  servingVersion?: string;
  targetVersion?: string;
}

/** The hold in force on a model's row, if any. */
export function holdInForce(model: { deferredUntil?: number; deferredSince?: number } | undefined, now = Date.now()) {
  return model?.deferredUntil !== undefined && model.deferredUntil > now ? { until: model.deferredUntil, since: model.deferredSince ?? now } : undefined;
}

export function defer(deps: DeferDeps, namespace: string, name: string, req: DeferralRequest, now = Date.now()): DeferResult {
  const key = `${namespace}/${name}`;
  const desired = deps.store.specs.get(namespace, name);
  if (!desired) throw new ModeldError('NotFound', `no model ${key} on this node`);
  const model = deps.store.models.get(namespace, name);
  const current = holdInForce(model, now);
  const { until, since } = deferralDeadline(req, now, deps.config.deferral.maxSeconds, current?.since);
  deps.store.models.update(namespace, name, { deferredUntil: until, deferredSince: since });
  deps.store.events.add({
    namespace,
    name,
    kind: 'Deferred',
    message: `${current ? 'hold extended' : 'switch held'} until ${new Date(until).toISOString()} by \`modeld defer\`: a new version is fetched and installed but not switched to before then`,
  });
  // No cancel: a download under way goes on (the hold keeps only the switch back).
  deps.kick(namespace, name);
  const target = desired.spec.image ? undefined : resolveTarget(desired.spec)?.version;
  return {
    model: key,
    deferredUntil: new Date(until).toISOString(),
    deferredSince: new Date(since).toISOString(),
    maxSeconds: deps.config.deferral.maxSeconds,
    servingVersion: model?.servingVersion,
    targetVersion: target,
  };
}

export interface DeferReleaseResult {
  model: string;
  /** RFC 3339: the deadline the hold had. */
  releasedUntil: string;
  targetVersion?: string;
}

/** `modeld defer --release`: ends the hold now; a waiting switch happens as usual. NotHeld when there is none. */
export function releaseDeferral(deps: DeferDeps, namespace: string, name: string, now = Date.now()): DeferReleaseResult {
  const key = `${namespace}/${name}`;
  const desired = deps.store.specs.get(namespace, name);
  if (!desired) throw new ModeldError('NotFound', `no model ${key} on this node`);
  const hold = holdInForce(deps.store.models.get(namespace, name), now);
  if (!hold) throw new ModeldError('NotHeld', `${key} is not deferred`);
  deps.store.models.update(namespace, name, { deferredUntil: undefined, deferredSince: undefined });
  deps.store.events.add({ namespace, name, kind: 'DeferralReleased', message: `hold until ${new Date(hold.until).toISOString()} released: a waiting switch happens now` });
  deps.kick(namespace, name);
  const target = desired.spec.image ? undefined : resolveTarget(desired.spec)?.version;
  return { model: key, releasedUntil: new Date(hold.until).toISOString(), targetVersion: target };
}
