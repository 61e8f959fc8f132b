import { mkdirSync } from 'node:fs';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import type { Config } from '../config/schema.js';
import { ModeldError, toModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { Gateway } from './gateway.js';
import { reapOrphans } from './pidfiles.js';
import { PortAllocator } from './ports.js';
import { planRuntime, type ServeTarget } from './runtime-plan.js';
import { InstanceGroup } from './supervisor.js';

export type { ServeTarget } from './runtime-plan.js';

// What the reconcile engine calls: serve a model version (blue/green), stop serving, report.
// One activation per model at a time; the old version keeps serving until the new one is ready.

export interface ServingDeps {
  config: Config;
  paths: StatePaths;
  log: Logger;
  /** A version took over the route (for events and the benchmark): times in ms from activate(). */
  onSwitch?: (namespace: string, name: string, version: string, t: { switchMs: number; runtimeStartMs: number }) => void;
  /** Runtime instances restarted (metrics). */
  onRuntimeRestarts?: (namespace: string, name: string, version: string, count: number) => void;
  /** A request the gateway routed to a model has ended (metrics). */
  onGatewayRequest?: (route: { namespace: string; name: string; modelName: string }, status: number, seconds: number) => void;
}

export interface ServingState {
  version: string;
  sha256?: string;
  replicas: number;
  readyReplicas: number;
  url: string;
}

interface Served {
  target: ServeTarget;
  group: InstanceGroup;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

export class Serving {
  readonly gateway: Gateway;
  private readonly ports: PortAllocator;
  private readonly models = new Map<string, Served>();
  /** One activation or deactivation per model at a time, in call order. */
  private readonly changing = new KeyedMutex();
  private closed = false;
  /** Aborts activations in progress when the agent shuts down. */
  private readonly closing = new AbortController();
  /** Groups being scaled up: their failures are thrown by activate(), not reported. */
  private readonly scaling = new Set<InstanceGroup>();
  private failureListener?: (target: ServeTarget, err: ModeldError) => void;

  constructor(private readonly d: ServingDeps) {
    this.gateway = new Gateway({ config: d.config, log: d.log.child({ part: 'gateway' }), onRequest: d.onGatewayRequest });
    this.ports = new PortAllocator(d.config.serving.basePort);
  }

  /** Kills runtimes a killed agent left behind, then opens the gateway. */
  async start(): Promise<void> {
    mkdirSync(this.d.paths.runDir, { recursive: true });
    const reaped = await reapOrphans(this.d.paths.runDir, { log: this.d.log, graceMs: this.d.config.serving.stopGraceMs });
    if (reaped.length) this.d.log.warn({ pids: reaped }, 'stopped runtimes left by a previous agent');
    await this.gateway.listen();
  }

  /**
   * Serves `target.version` of the model. Blue/green: the new instances start and must all be
   * ready before the route moves to them; requests in flight on the old version finish (bounded
   * by serving.drainTimeoutMs) before it stops. On failure the new instances are stopped, the old
   * version keeps serving, and the error (RuntimeNotFound, NotReady, CrashLoop, StartFailed,
   * Cancelled) is thrown. Same version and replicas already serving: nothing to do. `onRouted`
   * hears when the new instances take traffic, before the old ones drain and stop.
   */
  activate(target: ServeTarget, opts: { signal?: AbortSignal; onRouted?: () => void } = {}): Promise<{ url: string }> {
    return this.changing.run(keyOf(target.namespace, target.name), () => this.doActivate(target, opts.signal, opts.onRouted));
  }

  /**
   * Who decides what a serving failure means (the runner: block the tree, roll back): told when a
   * tree that took traffic fails for good (CrashLoop). Set once the decider exists, since it
   * serves through this very object.
   */
  onServingFailure(listener: (target: ServeTarget, err: ModeldError) => void): void {
    this.failureListener = listener;
  }

  /** Unroutes the model, lets requests in flight finish (bounded), stops its instances. */
  deactivate(namespace: string, name: string): Promise<void> {
    return this.changing.run(keyOf(namespace, name), async () => {
      const cur = this.models.get(keyOf(namespace, name));
      if (!cur) return;
      this.models.delete(keyOf(namespace, name));
      this.gateway.removeRoute(cur.target.modelName, cur.group);
      await this.retire(cur.group);
    });
  }

  state(namespace: string, name: string): ServingState | undefined {
    const cur = this.models.get(keyOf(namespace, name));
    if (!cur) return undefined;
    return {
      version: cur.target.version,
      sha256: cur.target.sha256,
      replicas: cur.target.replicas,
      readyReplicas: cur.group.readyCount(),
      url: this.gateway.urlFor(cur.target.modelName),
    };
  }

  served(): Array<{ namespace: string; name: string; modelName: string; version: string }> {
    return [...this.models.values()].map(({ target: t }) => ({ namespace: t.namespace, name: t.name, modelName: t.modelName, version: t.version }));
  }

  gatewayUrl(): string {
    return this.gateway.baseUrl();
  }

  /** Stops every instance and the gateway (agent shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    await this.changing.idle();
    const all = [...this.models.values()];
    this.models.clear();
    for (const s of all) this.gateway.removeRoute(s.target.modelName, s.group);
    await Promise.all(all.map((s) => s.group.stop()));
    await this.gateway.close();
  }

  private async doActivate(target: ServeTarget, callerSignal?: AbortSignal, onRouted?: () => void): Promise<{ url: string }> {
    const started = performance.now();
    const signal = callerSignal ? AbortSignal.any([callerSignal, this.closing.signal]) : this.closing.signal;
    if (this.closed) throw new ModeldError('Cancelled', 'serving is shutting down');
    const key = keyOf(target.namespace, target.name);
    // Validates every name and path before anything is spawned.
    const plan = planRuntime(target, this.d.config);
    const cur = this.models.get(key);
    for (const [k, s] of this.models) {
      if (k !== key && s.target.modelName === target.modelName) {
        throw new ModeldError('StartFailed', `model name "${target.modelName}" is already served for ${k}`, { details: { modelName: target.modelName, servedBy: k } });
      }
    }
    const url = this.gateway.urlFor(target.modelName);
    const log = this.d.log.child({ model: key, version: target.version });

    if (cur && !cur.group.failure && cur.target.version === target.version && cur.target.sha256 === target.sha256 && cur.target.versionDir === target.versionDir && cur.target.modelName === target.modelName && sameRuntime(cur, plan.runtime)) {
      if (cur.target.replicas === target.replicas) return { url };
      // Same version, other replica count: scale in place.
      if (target.replicas > cur.target.replicas) {
        // A new replica that fails is this activation's error, not a failure of the serving version.
        this.scaling.add(cur.group);
        try {
          cur.group.start(target.replicas);
          await cur.group.waitReady(plan.startTimeoutMs, signal).catch(async (err: unknown) => {
            await cur.group.scaleDown(cur.target.replicas);
            throw toModeldError(err);
          });
        } finally {
          this.scaling.delete(cur.group);
        }
      } else {
        await cur.group.scaleDown(target.replicas);
      }
      cur.target = { ...target };
      log.info({ replicas: target.replicas }, 'scaled');
      return { url };
    }

    const group = new InstanceGroup({
      namespace: target.namespace,
      name: target.name,
      modelName: target.modelName,
      version: target.version,
      plan,
      firstIndex: cur && cur.target.version === target.version ? cur.group.nextIndex : 0,
      ports: this.ports,
      runDir: this.d.paths.runDir,
      serving: this.d.config.serving,
      log: this.d.log,
      onFailure: (g, err) => this.groupFailed(g, err),
      onRestarts: (g, n) => this.d.onRuntimeRestarts?.(g.namespace, g.name, g.version, n),
    });
    log.info({ runtime: plan.runtime, replicas: target.replicas }, 'starting version');
    group.start(target.replicas);
    try {
      await group.waitReady(plan.startTimeoutMs, signal);
    } catch (err) {
      await group.stop();
      const e = toModeldError(err);
      log.warn({ code: e.code, err: e.message }, 'version did not become ready; the previous one keeps serving');
      throw e;
    }
    // The switch: one assignment; new requests go to the new instances from here on.
    this.gateway.setRoute(target.modelName, group);
    if (cur && cur.target.modelName !== target.modelName) this.gateway.removeRoute(cur.target.modelName, cur.group);
    this.models.set(key, { target: { ...target }, group });
    const switchMs = performance.now() - started;
    log.info({ switchMs: Math.round(switchMs), runtimeStartMs: Math.round(group.runtimeStartMs()), previous: cur?.target.version }, 'version serving');
    try {
      this.d.onSwitch?.(target.namespace, target.name, target.version, { switchMs, runtimeStartMs: group.runtimeStartMs() });
    } catch {
      /* an observer must not break the switch */
    }
    onRouted?.();
    if (cur) await this.retire(cur.group);
    return { url };
  }

  /** Drain then stop a group that no longer receives new requests. */
  private async retire(group: InstanceGroup): Promise<void> {
    const left = await group.drain(this.d.config.serving.drainTimeoutMs, this.closing.signal);
    if (left > 0) this.d.log.warn({ model: `${group.namespace}/${group.name}`, version: group.version, inFlight: left }, 'drain timed out; stopping with requests in flight');
    await group.stop();
  }

  private groupFailed(group: InstanceGroup, err: ModeldError) {
    const cur = this.models.get(keyOf(group.namespace, group.name));
    // Failures while starting are thrown by activate(); only a serving version is reported here.
    if (cur?.group !== group || this.scaling.has(group)) return;
    this.d.log.error({ model: `${group.namespace}/${group.name}`, version: group.version, code: err.code, err: err.message }, 'serving version failed');
    try {
      this.failureListener?.({ ...cur.target }, err);
    } catch (e) {
      this.d.log.error({ err: (e as Error).message }, 'the serving-failure listener threw');
    }
  }
}

const sameRuntime = (s: Served, runtime: string) => s.group.runtime === runtime;
