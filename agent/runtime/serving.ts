import { mkdirSync } from 'node:fs';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { sleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { ModeldError, toModeldError } from '../errors.js';
import type { HostState, RouteRequest, RouteState } from '../host/protocol.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { endpointUrl, modelUrl } from './gateway.js';
import { HostClient } from './host-client.js';
import { isRunning, reapOrphans } from './pidfiles.js';
import { PortAllocator } from './ports.js';
import { planRuntime, type RuntimePlan, type ServeTarget } from './runtime-plan.js';
import { InstanceGroup } from './supervisor.js';

export type { ServeTarget } from './runtime-plan.js';

// What the reconcile engine calls: serve a model version (blue/green), stop serving, report.
// One activation per model at a time; the old version keeps serving until the new one is ready.
//
// The node endpoint and the sessions of built-in models live in the runtime host (agent/host/),
// a process of its own whose life is apart from the agent's: this side tells it what to serve,
// supervises the instances of external runtimes and of `isolation: process` models (the agent's
// children, proxied by the host), and, with serving.hostStart "agent", starts the host and starts
// it again when it dies.

export interface ServingDeps {
  config: Config;
  paths: StatePaths;
  log: Logger;
  /** A version took over the route (for events and the benchmark): times in ms from activate(). */
  onSwitch?: (namespace: string, name: string, version: string, t: { switchMs: number; runtimeStartMs: number }) => void;
  /** Runtime instances restarted (metrics). */
  onRuntimeRestarts?: (namespace: string, name: string, version: string, count: number) => void;
  /** The runtime host restarted (metrics, events): found by a new boot id, with its hang record if a hang caused it. */
  onHostRestart?: (info: { pid: number; previousPid?: number; lastHang?: HostState['lastHang'] }) => void;
}

export interface ServingState {
  version: string;
  sha256?: string;
  replicas: number;
  readyReplicas: number;
  url: string;
  /** host: sessions in the runtime host; process: processes of their own (external runtimes too). */
  isolation: 'host' | 'process';
  /** The onnxruntime backend of the host's sessions ("native" or "wasm"). */
  backend?: string;
}

interface Served {
  target: ServeTarget;
  runtime: string;
  /** Instances this agent supervises (proxy routes); absent for sessions in the host. */
  group?: InstanceGroup;
  /** The host's last word on this route. */
  host?: RouteState;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;
const BACKOFF_CAP_MS = 60_000;

export class Serving {
  readonly host: HostClient;
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
  private hostState: HostState | undefined;
  private monitor: Promise<void> | undefined;
  private reportedErrors = new Set<string>();

  constructor(private readonly d: ServingDeps) {
    this.ports = new PortAllocator(d.config.serving.basePort);
    this.host = new HostClient({ config: d.config, paths: d.paths, log: d.log.child({ part: 'host-client' }) });
  }

  /** Kills runtimes a killed agent left behind, connects to the runtime host (starting it if need be), adopts what it serves. */
  async start(): Promise<void> {
    mkdirSync(this.d.paths.runDir, { recursive: true });
    const reaped = await reapOrphans(this.d.paths.runDir, { log: this.d.log, graceMs: this.d.config.serving.stopGraceMs });
    if (reaped.length) this.d.log.warn({ pids: reaped }, 'stopped runtimes left by a previous agent');
    const state = await this.connect();
    this.adopt(state);
    this.monitor = this.watchHost();
  }

  /** The running host, or a new one when the socket does not answer (hostStart "agent"). */
  private async connect(): Promise<HostState> {
    try {
      return await this.host.state(2000);
    } catch {
      if (this.d.config.serving.hostStart === 'agent') this.host.spawn();
      else this.d.log.warn({ socket: this.host.socketPath }, 'waiting for the runtime host (modeld-host.service)');
    }
    return this.host.waitAnswering(this.d.config.serving.startTimeoutMs, this.closing.signal);
  }

  /** What the host serves becomes ours: the same version asked again is not reloaded. */
  private adopt(state: HostState) {
    this.hostState = state;
    for (const r of state.routes) {
      const key = keyOf(r.namespace, r.name);
      if (this.models.has(key)) continue;
      if (r.kind === 'proxy') {
        // Its instances were the previous agent's (reaped above): nothing answers there. The route
        // stays (503 until the reconcile starts new instances), and it is not ours to report as serving.
        const { readyReplicas: _r, inFlight: _i, sessions: _s, backend: _b, error: _e, ...spec } = r;
        void this.changing
          .run(key, () => this.host.change('POST', '/routes', { ...spec, ports: [], drainTimeoutMs: 0 }, () => {}))
          .catch((err: Error) => this.d.log.warn({ model: key, err: err.message }, 'could not empty the instances of a route left by the previous agent'));
        continue;
      }
      this.models.set(key, { target: { namespace: r.namespace, name: r.name, modelName: r.modelName, version: r.version, sha256: r.sha256, versionDir: r.versionDir, replicas: r.replicas }, runtime: r.runtime, host: r });
    }
    if (state.routes.length) this.d.log.info({ models: state.routes.map((r) => `${r.namespace}/${r.name}@${r.version}`) }, 'the runtime host serves these already');
  }

  /**
   * Serves `target.version` of the model. Blue/green: the new version is loaded (sessions in the
   * host) or started (instances) and must be ready before the route moves to it; requests in
   * flight on the old version finish (bounded by serving.drainTimeoutMs) before it is released.
   * On failure the old version keeps serving, and the error (RuntimeNotFound, NotReady, CrashLoop,
   * StartFailed, Cancelled) is thrown. Same version and replicas already serving: nothing to do.
   * `onRouted` hears when the new version takes traffic, before the old one drains and stops.
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

  /** Unroutes the model, lets requests in flight finish (bounded), stops it. */
  deactivate(namespace: string, name: string): Promise<void> {
    return this.changing.run(keyOf(namespace, name), async () => {
      const key = keyOf(namespace, name);
      const cur = this.models.get(key);
      if (!cur) return;
      await this.host.change('DELETE', `/routes/${namespace}/${name}?drainTimeoutMs=${this.d.config.serving.drainTimeoutMs}`, undefined, () => {});
      this.models.delete(key);
      await cur.group?.stop();
    });
  }

  state(namespace: string, name: string): ServingState | undefined {
    const cur = this.models.get(keyOf(namespace, name));
    if (!cur) return undefined;
    return {
      version: cur.target.version,
      sha256: cur.target.sha256,
      replicas: cur.target.replicas,
      readyReplicas: cur.group ? cur.group.readyCount() : (cur.host?.readyReplicas ?? 0),
      url: this.urlFor(cur.target.modelName),
      isolation: cur.host?.kind === 'session' && !cur.group ? 'host' : 'process',
      ...(cur.host?.kind === 'session' && !cur.group ? { backend: cur.host.backend ?? 'native' } : {}),
    };
  }

  served(): Array<{ namespace: string; name: string; modelName: string; version: string }> {
    return [...this.models.values()].map(({ target: t }) => ({ namespace: t.namespace, name: t.name, modelName: t.modelName, version: t.version }));
  }

  /** The node endpoint's port (the host's). */
  get endpointPort(): number {
    return this.hostState?.endpoint.port ?? this.d.config.gateway.port;
  }

  gatewayUrl(): string {
    return endpointUrl(this.d.config, this.endpointPort);
  }

  urlFor(modelName: string): string {
    return modelUrl(this.gatewayUrl(), modelName);
  }

  /** What the host said last (doctor, tests). */
  lastHostState(): HostState | undefined {
    return this.hostState;
  }

  /** The node endpoint's metrics, from the host (appended to the agent's /metrics). */
  async hostMetrics(): Promise<string> {
    const r = await this.host.call<string>('GET', '/metrics', undefined, 2000);
    return typeof r.body === 'string' ? r.body : '';
  }

  /**
   * Agent shutdown: the instances this agent supervises stop (their routes answer 503 until a new
   * agent starts them again); the runtime host and its models go on.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    await this.changing.idle();
    await this.monitor;
    const owned = [...this.models.entries()].filter(([, s]) => s.group);
    await Promise.all(owned.map(([key]) => this.sendPorts(key, []).catch(() => {})));
    await Promise.all(owned.map(([, s]) => s.group!.stop()));
    this.models.clear();
  }

  /** Stops the runtime host too (tests, benchmarks; never the agent's own shutdown). */
  async stopHost(): Promise<void> {
    await this.host.shutdown();
  }

  private async doActivate(target: ServeTarget, callerSignal?: AbortSignal, onRouted?: () => void): Promise<{ url: string }> {
    const started = performance.now();
    const signal = callerSignal ? AbortSignal.any([callerSignal, this.closing.signal]) : this.closing.signal;
    if (this.closed) throw new ModeldError('Cancelled', 'serving is shutting down');
    const key = keyOf(target.namespace, target.name);
    // Validates every name and path before anything is spawned or loaded.
    const plan = planRuntime(target, this.d.config);
    for (const [k, s] of this.models) {
      if (k !== key && s.target.modelName === target.modelName) {
        throw new ModeldError('StartFailed', `model name "${target.modelName}" is already served for ${k}`, { details: { modelName: target.modelName, servedBy: k } });
      }
    }
    const cur = this.models.get(key);
    const url = this.urlFor(target.modelName);
    const log = this.d.log.child({ model: key, version: target.version });
    const inHost = plan.builtin && this.d.config.serving.isolation === 'host' && !this.d.config.serving.isolateModels.includes(key);
    const same =
      cur && cur.target.version === target.version && cur.target.sha256 === target.sha256 && cur.target.versionDir === target.versionDir && cur.target.modelName === target.modelName && cur.runtime === plan.runtime;

    if (inHost) {
      if (same && !cur.group && cur.host?.kind === 'session' && !cur.host.error && cur.target.replicas === target.replicas) return { url };
      const done = await this.host
        .change('POST', '/routes', this.request(target, plan, 'session'), (e) => {
          if (e.event === 'routed') onRouted?.();
        })
        .catch(async (err: unknown) => {
          throw await this.diedLoading(target, err, signal);
        });
      this.models.set(key, { target: { ...target }, runtime: plan.runtime, host: done.route });
      this.switched(target, started, started, log, cur?.target.version);
      // Instances of a process-isolated version before it: drained by the host already.
      if (cur?.group) await cur.group.stop();
      return { url };
    }

    if (same && cur.group && !cur.group.failure) {
      if (cur.target.replicas === target.replicas) return { url };
      // Same version, other replica count: scale in place.
      if (target.replicas > cur.target.replicas) {
        // A new replica that fails is this activation's error, not a failure of the serving version.
        this.scaling.add(cur.group);
        try {
          cur.group.start(target.replicas);
          await cur.group.waitReady(plan.startTimeoutMs, signal).catch(async (err: unknown) => {
            await cur.group!.scaleDown(cur.target.replicas);
            throw toModeldError(err);
          });
        } finally {
          this.scaling.delete(cur.group);
        }
      } else {
        await cur.group.scaleDown(target.replicas);
      }
      cur.target = { ...target };
      await this.sendPorts(key, cur.group.readyPorts());
      log.info({ replicas: target.replicas }, 'scaled');
      return { url };
    }

    const group = new InstanceGroup({
      namespace: target.namespace,
      name: target.name,
      modelName: target.modelName,
      version: target.version,
      plan,
      firstIndex: cur?.group && cur.target.version === target.version ? cur.group.nextIndex : 0,
      ports: this.ports,
      runDir: this.d.paths.runDir,
      serving: this.d.config.serving,
      log: this.d.log,
      onFailure: (g, err) => this.groupFailed(g, err),
      onRestarts: (g, n) => this.d.onRuntimeRestarts?.(g.namespace, g.name, g.version, n),
      onReadyChange: (g) => {
        if (this.models.get(key)?.group === g) void this.pushPorts(key, undefined, g);
      },
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
    let done;
    try {
      done = await this.host.change('POST', '/routes', { ...this.request(target, plan, 'proxy'), ports: group.readyPorts() }, (e) => {
        if (e.event === 'routed') onRouted?.();
      });
    } catch (err) {
      await group.stop();
      throw err;
    }
    this.models.set(key, { target: { ...target }, runtime: plan.runtime, group, host: done.route });
    this.switched(target, started, started + group.runtimeStartMs(), log, cur?.target.version, group.runtimeStartMs());
    // The host drained the old version already.
    if (cur?.group) await cur.group.stop();
    return { url };
  }

  /**
   * The host went away in the middle of loading `target`: when it is back, did it die in that very
   * load (a crash in onnxruntime, load-record.ts)? Then the version failed for good (StartFailed,
   * not retried, or the agent would crash the host again and again); otherwise the error stands.
   */
  private async diedLoading(target: ServeTarget, err: unknown, signal: AbortSignal): Promise<ModeldError> {
    const e = toModeldError(err);
    if (!e.retryable) return e;
    const deadline = Date.now() + this.d.config.serving.startTimeoutMs;
    while (Date.now() < deadline && !signal.aborted) {
      let state: HostState | undefined;
      try {
        state = await this.host.state(2000);
      } catch {
        await sleep(50, signal).catch(() => {});
        continue;
      }
      const died = state.diedLoading?.find(
        (d) => d.namespace === target.namespace && d.name === target.name && d.version === target.version && (d.sha256 ?? '') === (target.sha256 ?? '') && d.versionDir === target.versionDir,
      );
      return died ? new ModeldError('StartFailed', died.message, { details: { cause: died.cause, hostPid: died.pid } }) : e;
    }
    return e;
  }

  private request(target: ServeTarget, plan: RuntimePlan, kind: 'session' | 'proxy'): RouteRequest {
    return {
      namespace: target.namespace,
      name: target.name,
      modelName: target.modelName,
      version: target.version,
      ...(target.sha256 ? { sha256: target.sha256 } : {}),
      versionDir: target.versionDir,
      kind,
      replicas: target.replicas,
      runtime: plan.runtime,
      drainTimeoutMs: this.d.config.serving.drainTimeoutMs,
    };
  }

  private switched(target: ServeTarget, started: number, _routedAt: number, log: Logger, previous?: string, runtimeStartMs?: number) {
    const switchMs = performance.now() - started;
    log.info({ switchMs: Math.round(switchMs), previous }, 'version serving');
    try {
      this.d.onSwitch?.(target.namespace, target.name, target.version, { switchMs, runtimeStartMs: runtimeStartMs ?? switchMs });
    } catch {
      /* an observer must not break the switch */
    }
  }

  /** The ready instances of the serving group changed: the host routes to the new set. */
  private pushPorts(key: string, ports?: number[], group?: InstanceGroup): Promise<void> {
    return this.changing
      .run(key, async () => {
        const cur = this.models.get(key);
        if (!cur || (group && cur.group !== group)) return;
        await this.sendPorts(key, ports ?? cur.group?.readyPorts() ?? []);
      })
      .catch((err: Error) => this.d.log.warn({ model: key, err: err.message }, 'could not tell the runtime host the ready instances'));
  }

  /** Same version, other ports: the host changes them in place (no switch). Call under the model's turn. */
  private async sendPorts(key: string, ports: number[]): Promise<void> {
    const cur = this.models.get(key);
    if (!cur) return;
    const t = cur.target;
    const done = await this.host.change(
      'POST',
      '/routes',
      {
        namespace: t.namespace,
        name: t.name,
        modelName: t.modelName,
        version: t.version,
        ...(t.sha256 ? { sha256: t.sha256 } : {}),
        versionDir: t.versionDir,
        kind: 'proxy',
        replicas: t.replicas,
        runtime: cur.runtime,
        ports,
        drainTimeoutMs: this.d.config.serving.drainTimeoutMs,
      },
      () => {},
    );
    cur.host = done.route;
  }

  /**
   * The host's health, every serving.probeIntervalMs: its state refreshes what state() reports;
   * serving.probeFailures unanswered probes in a row (or the exit of the host this agent started)
   * mean a dead or hung host, started again here with hostStart "agent". A new boot id means the
   * host restarted (it restored its models itself): counted, reported, and the instances this
   * agent supervises are told to it again.
   */
  private async watchHost(): Promise<void> {
    const s = this.d.config.serving;
    const signal = this.closing.signal;
    let failures = 0;
    let restarts = 0;
    let watched: { child: unknown; exited: Promise<void> } | undefined;
    while (!signal.aborted) {
      const child = this.host.child;
      if (child && watched?.child !== child) {
        const exited = child.exitCode === null && child.signalCode === null ? new Promise<void>((r) => child.once('exit', () => r())) : Promise.resolve();
        watched = { child, exited };
      }
      const exited = child && child.exitCode === null && child.signalCode === null ? watched?.exited : undefined;
      await Promise.race([sleep(s.probeIntervalMs, signal), ...(exited ? [exited] : [])]);
      if (signal.aborted) break;
      let state: HostState | undefined;
      try {
        state = await this.host.state(s.probeTimeoutMs);
        failures = 0;
      } catch (err) {
        failures++;
        const dead = !!this.host.child && (this.host.child.exitCode !== null || this.host.child.signalCode !== null);
        this.d.log.warn({ failures, err: (err as Error).message, dead }, 'runtime host did not answer');
        if (s.hostStart === 'agent' && (dead || failures >= s.probeFailures)) {
          const pid = this.hostState?.pid;
          if (pid && isRunning(pid)) {
            this.d.log.error({ pid }, 'runtime host hung: killing it');
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* gone */
            }
            while (isRunning(pid) && !signal.aborted) await sleep(10, signal);
          }
          if (restarts > 0) await sleep(Math.min(BACKOFF_CAP_MS, s.restartBackoffMs * 2 ** (restarts - 1)), signal);
          if (signal.aborted) break;
          restarts++;
          this.host.spawn();
          try {
            state = await this.host.waitAnswering(s.startTimeoutMs, signal);
            failures = 0;
          } catch (e) {
            this.d.log.error({ err: (e as Error).message }, 'the runtime host did not come back');
            continue;
          }
        } else {
          continue;
        }
      }
      if (!state.restoring) restarts = 0;
      this.noteHost(state);
    }
  }

  private noteHost(state: HostState) {
    const before = this.hostState;
    this.hostState = state;
    const restarted = before && before.bootId !== state.bootId;
    if (restarted) {
      this.d.log.warn({ pid: state.pid, previousPid: before.pid, lastHang: state.lastHang }, 'the runtime host restarted; it restores its models');
      try {
        this.d.onHostRestart?.({ pid: state.pid, previousPid: before.pid, lastHang: state.lastHang });
      } catch {
        /* an observer must not break supervision */
      }
      if (state.lastHang) void this.host.call('POST', '/hang-seen').catch(() => {});
      // The host restored proxy routes with the ports it saved; ours may have moved since.
      for (const [key, s] of this.models) if (s.group) void this.pushPorts(key, undefined, s.group);
    }
    for (const r of state.routes) {
      const key = keyOf(r.namespace, r.name);
      const cur = this.models.get(key);
      if (!cur || cur.target.version !== r.version) continue;
      cur.host = r;
      // A session route that lost its sessions for good (a restore that failed): the owner decides.
      if (r.error && !this.reportedErrors.has(`${state.bootId}/${key}`)) {
        this.reportedErrors.add(`${state.bootId}/${key}`);
        try {
          this.failureListener?.({ ...cur.target }, new ModeldError('StartFailed', r.error));
        } catch (e) {
          this.d.log.error({ err: (e as Error).message }, 'the serving-failure listener threw');
        }
      }
    }
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
