import { toModeldError, type ModeldError } from '../errors.js';
import { describeTree, sameTree, toTree, type TreeRef } from '../install/tree-ref.js';
import { gatherPlanInput } from './gather.js';
import { plan, type Plan, type Step } from './plan.js';
import { specHash } from './spec-hash.js';
import { runStep, type StepDeps } from './steps.js';

// Runs each model's plan one step at a time until nothing is left. One apply per model at a time;
// a newer spec aborts the running apply through its AbortSignal, and the loop plans again.

const MAX_STEPS = 24;

interface Slot {
  abort: AbortController;
  done: Promise<void>;
  again: boolean;
  cancel: boolean;
}

export interface RunnerOptions {
  /** Delay before a retryable failure (a network error) is tried again under the same spec. */
  retryDelayMs: number;
}

export class Runner {
  private readonly slots = new Map<string, Slot>();
  private readonly learnt = new Map<string, Map<string, string>>();
  /** Per model, the spec hash under which serving a tree other than the target's failed (plan.ts, restoreFailed). */
  private readonly restoreFailed = new Map<string, string>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  /** Per model, the kick at the deadline of a local hold that keeps a switch back (`modeld defer`). */
  private readonly deferTimers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly deps: StepDeps,
    private readonly opts: RunnerOptions = { retryDelayMs: 60_000 },
  ) {}

  /**
   * Asks for `ns/name` to be reconciled. With `cancel` (the spec changed) a running apply is
   * aborted first; otherwise it runs once more after the current one.
   */
  kick(namespace: string, name: string, opts: { cancel?: boolean } = {}): void {
    if (this.stopped) return;
    const key = `${namespace}/${name}`;
    const slot = this.slots.get(key);
    if (slot) {
      slot.again = true;
      if (opts.cancel) {
        slot.cancel = true;
        slot.abort.abort(new Error('superseded by a newer spec'));
      }
      return;
    }
    const abort = new AbortController();
    const fresh: Slot = { abort, again: false, cancel: false, done: Promise.resolve() };
    fresh.done = this.loop(namespace, name, fresh).finally(() => {
      this.slots.delete(key);
      if (fresh.again && !this.stopped) this.kick(namespace, name);
    });
    this.slots.set(key, fresh);
  }

  /** Every model with a spec or with something on disk. */
  kickAll(): void {
    const keys = new Set<string>();
    for (const s of this.deps.store.specs.list()) keys.add(`${s.namespace}/${s.name}`);
    for (const m of this.deps.store.models.list()) keys.add(`${m.namespace}/${m.name}`);
    for (const k of keys) {
      const [ns, name] = k.split('/');
      this.kick(ns, name);
    }
  }

  /** Resolves when no model is being applied (tests, CLI). */
  async idle(): Promise<void> {
    while (this.slots.size) await Promise.all([...this.slots.values()].map((s) => s.done));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    for (const t of this.deferTimers.values()) clearTimeout(t);
    for (const s of this.slots.values()) s.abort.abort(new Error('agent stopping'));
    await Promise.allSettled([...this.slots.values()].map((s) => s.done));
  }

  private async loop(namespace: string, name: string, slot: Slot): Promise<void> {
    const key = `${namespace}/${name}`;
    const { reporter, store } = this.deps;
    const log = this.deps.log.child({ model: key });
    const learnt = this.learnt.get(key) ?? new Map<string, string>();
    this.learnt.set(key, learnt);
    this.expireDeferral(namespace, name);
    try {
      for (let i = 0; i < MAX_STEPS; i++) {
        if (slot.abort.signal.aborted) return;
        const desired = store.specs.get(namespace, name);
        const restoreFailed = desired !== undefined && this.restoreFailed.get(key) === specHash(desired.spec);
        const { input, hash } = await gatherPlanInput(this.deps, namespace, name, { restoreFailed, learnt });
        const p = plan(input);
        const step = p.steps[0];
        if (!step) return this.settle(namespace, name, p);
        // Only the cleanup is left: say where the model stands without waiting for it.
        if (step.kind === 'gc' && p.steps.length === 1) this.settle(namespace, name, p);
        const modelRef = { namespace, name, modelName: desired?.spec.modelName ?? name, frameworkType: desired?.spec.frameworkType };
        try {
          log.debug({ step }, 'step');
          await runStep(step, modelRef, this.deps, { signal: slot.abort.signal, learnt });
        } catch (err) {
          const e = toModeldError(err);
          if (slot.abort.signal.aborted || e.code === 'Cancelled') return;
          if (step.kind === 'serve' && hash && !(sameTree(step.tree, p.want) && sameTree(step.tree, p.target))) {
            // Serving another tree than the target's (restoring `current`, a held tree, a fallback)
            // failed: go on with the target's alone under this spec, rather than alternate between failures.
            this.restoreFailed.set(key, hash);
            log.warn({ err: e.message, reason: e.code, version: describeTree(step.tree) }, 'could not serve the version that served before');
            continue;
          }
          const tree = failedTree(step, learnt);
          if (tree && hash) {
            this.markFailed(namespace, name, tree, hash, e);
            continue;
          }
          throw e;
        }
      }
      log.error('reconcile did not converge within the step budget');
    } catch (err) {
      const e = toModeldError(err);
      if (e.code === 'Cancelled' || slot.abort.signal.aborted) return;
      reporter.report(namespace, name, { phase: 'Failed', reason: e.code, message: e.message });
    }
  }

  /**
   * The serving-failure policy: a tree that took traffic and then failed for good (CrashLoop) is
   * blocked under this spec, reported, and the model planned again, which rolls back to what
   * served before it. The serving layer tells (Serving.onServingFailure).
   */
  servingFailed(namespace: string, name: string, tree: TreeRef, err: ModeldError): void {
    const { store, reporter } = this.deps;
    const desired = store.specs.get(namespace, name);
    const message = `version ${describeTree(tree)} failed while serving: ${err.message}`;
    if (desired) {
      store.models.update(namespace, name, {
        failedVersion: tree.version,
        failedSha256: tree.sha256,
        failedSpecHash: specHash(desired.spec),
        failedReason: err.code,
        failedMessage: message,
      });
    }
    reporter.report(namespace, name, { phase: 'Failed', reason: err.code, message });
    this.kick(namespace, name);
  }

  /** The target failed under this spec: remember it (not retried until the spec changes) and report. */
  private markFailed(namespace: string, name: string, tree: TreeRef, hash: string, e: ModeldError): void {
    const { store, reporter } = this.deps;
    const message = `version ${describeTree(tree)}: ${e.message}`;
    store.models.update(namespace, name, { failedVersion: tree.version, failedSha256: tree.sha256, failedSpecHash: hash, failedReason: e.code, failedMessage: message });
    reporter.report(namespace, name, { phase: 'Failed', reason: e.code, message, targetVersion: tree.version });
    if (e.retryable) this.scheduleRetry(namespace, name, tree, hash);
  }

  /** A network failure may pass: try the same tree again later while the spec is unchanged. */
  private scheduleRetry(namespace: string, name: string, tree: TreeRef, hash: string): void {
    const key = `${namespace}/${name}`;
    clearTimeout(this.retryTimers.get(key));
    const timer = setTimeout(() => {
      this.retryTimers.delete(key);
      const m = this.deps.store.models.get(namespace, name);
      if (m?.failedVersion === tree.version && m.failedSha256 === tree.sha256 && m.failedSpecHash === hash) {
        this.deps.store.models.update(namespace, name, { failedVersion: undefined, failedSha256: undefined, failedSpecHash: undefined, failedReason: undefined, failedMessage: undefined });
        this.kick(namespace, name);
      }
    }, this.opts.retryDelayMs);
    timer.unref();
    this.retryTimers.set(key, timer);
  }

  /** A hold whose deadline passed ends here (the planner already ignores it): cleared and recorded. */
  private expireDeferral(namespace: string, name: string): void {
    const { store } = this.deps;
    const model = store.models.get(namespace, name);
    if (model?.deferredUntil === undefined || model.deferredUntil > Date.now()) return;
    store.models.update(namespace, name, { deferredUntil: undefined, deferredSince: undefined });
    store.events.add({ namespace, name, kind: 'DeferralExpired', message: `hold until ${new Date(model.deferredUntil).toISOString()} ended at its deadline: a waiting switch happens now` });
  }

  /** Plans the model again at the hold's deadline (a timer: nothing else would). */
  private scheduleDeferralEnd(namespace: string, name: string, until: number | undefined): void {
    const key = `${namespace}/${name}`;
    clearTimeout(this.deferTimers.get(key));
    this.deferTimers.delete(key);
    if (until === undefined || this.stopped) return;
    // setTimeout holds at most 2^31-1 ms; a longer hold is simply looked at again then.
    const timer = setTimeout(() => {
      this.deferTimers.delete(key);
      this.kick(namespace, name);
    }, Math.min(Math.max(until - Date.now(), 0) + 1, 2 ** 31 - 1));
    timer.unref();
    this.deferTimers.set(key, timer);
  }

  /** No step left: report where the model stands, once per change. */
  private settle(namespace: string, name: string, p: Plan): void {
    const { store, reporter, serving } = this.deps;
    const model = store.models.get(namespace, name);
    const desired = store.specs.get(namespace, name);
    this.scheduleDeferralEnd(namespace, name, p.deferred && desired ? model?.deferredUntil : undefined);
    if (!desired) return; // removed; 'Deleted' was reported by the remove step
    if (p.refusal) {
      if (model?.phase !== p.refusal.phase || model.reason !== p.refusal.reason) reporter.report(namespace, name, p.refusal);
      return;
    }
    if (p.blocked) {
      // Stays Failed (the old version, if any, keeps serving) until the spec changes.
      if (model?.phase !== 'Failed') reporter.report(namespace, name, { phase: 'Failed', reason: model?.failedReason, message: model?.failedMessage });
      return;
    }
    if (p.deferred && model?.deferredUntil !== undefined) {
      // The new tree waits, installed; the old one goes on serving until the deadline or a release.
      const until = new Date(model.deferredUntil).toISOString();
      const from = model.servingVersion ? ` (version ${model.servingVersion} goes on serving)` : '';
      const message = `version ${describeTree(p.deferred)} is installed; the switch to it is deferred by a local hold until ${until}${from}; \`modeld defer --release ${namespace}/${name}\` ends the hold`;
      if (model.phase !== 'Deferred' || model.message !== message || model.observedGeneration !== desired.generation) {
        reporter.report(namespace, name, { phase: 'Deferred', reason: 'UpdateDeferred', message, version: p.deferred.version });
      }
      return;
    }
    const phase = serving ? 'Serving' : 'Installed';
    // Serving a held tree other than the target's: say so (RolledBack) until the spec changes.
    const heldTree = toTree(model?.heldVersion, model?.heldSha256);
    const held = sameTree(p.want, heldTree) && !sameTree(p.want, p.target);
    const stale = model?.phase !== phase || model.observedGeneration !== desired.generation || model.reason !== (held ? 'RolledBack' : undefined);
    if (stale) {
      // The log line names the version it is about: the held one, not the target.
      const message = held && `serving version ${describeTree(heldTree!)}, held by \`modeld rollback\` instead of the target ${p.target ? describeTree(p.target) : ''}, until the spec changes or \`modeld rollback --release ${namespace}/${name}\``;
      reporter.report(namespace, name, held ? { phase, reason: 'RolledBack', message: message || undefined, version: heldTree!.version } : { phase });
    }
  }
}

/** The tree a failed fetch, install or serve was for (a failed point or gc marks nothing). */
function failedTree(step: Step, learnt: Map<string, string>): TreeRef | undefined {
  switch (step.kind) {
    case 'fetch': {
      const sha256 = step.sha256 ?? learnt.get(step.url);
      return sha256 ? { version: step.version, sha256 } : { version: step.version };
    }
    case 'install':
      return step.sha256 ? { version: step.version, sha256: step.sha256 } : { version: step.version };
    case 'serve':
      return step.tree;
    default:
      return undefined;
  }
}
