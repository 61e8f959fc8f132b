import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { Counter, Gauge, Registry } from 'prom-client';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { sleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { writeFileAtomic } from '../durable.js';
import { ModeldError, toModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { Gateway } from '../runtime/gateway.js';
import { EndpointMetrics } from './endpoint-metrics.js';
import { validateTarget } from '../runtime/runtime-plan.js';
import { startHangWatchdog, type HangWatchdog } from './hang-watchdog.js';
import { LoadRecord, sameLoad } from './load-record.js';
import { hostHangFile, hostLoadingFile, hostRoutesFile, routeKey, type DiedLoading, type HostState, type RouteEvent, type RouteRequest, type RouteSpec, type RouteState } from './protocol.js';
import { loadProxying, ProxyRoute } from './proxy-route.js';
import { defaultLoad, loadWarm, SessionRoute, warmupBody, type LoadModel, type Session } from './session-route.js';

// The runtime host: one process holding the sessions of every built-in ONNX version the node
// serves and owning the node endpoint (gateway.bind:gateway.port). Built-in models are answered
// here; external runtimes and `isolation: process` instances are proxied to their loopback ports.
// The agent says what to serve over the control socket; the host keeps that route table on disk,
// so that a restarted host serves every model again even while the agent is down.
//
// Blue/green inside the host: the new sessions are loaded and warmed up, the route moves in one
// assignment, requests in flight on the old sessions finish (bounded), then they are released. A
// version that fails to load or warm up never takes traffic.

type Route = SessionRoute | ProxyRoute;

export interface HostDeps {
  config: Config;
  paths: StatePaths;
  log: Logger;
  /** Loads one model (default onnxruntime through oip-model.ts); tests pass their own. */
  load?: LoadModel;
}

const sameIdentity = (a: RouteSpec, b: RouteSpec) =>
  a.kind === b.kind && a.version === b.version && a.sha256 === b.sha256 && a.versionDir === b.versionDir && a.modelName === b.modelName && a.runtime === b.runtime;

export class RuntimeHost {
  readonly gateway: Gateway;
  readonly registry = new Registry();
  readonly bootId = randomBytes(8).toString('hex');
  private readonly startedAt = new Date().toISOString();
  private readonly routes = new Map<string, Route>();
  private readonly changing = new KeyedMutex();
  private readonly load: LoadModel;
  private restoring = true;
  private closed = false;
  private readonly closing = new AbortController();
  private persisting: Promise<void> = Promise.resolve();
  private watchdog: HangWatchdog | undefined;
  private lastHang: HostState['lastHang'];
  private readonly loadRecord: LoadRecord;
  /** Versions a host died while loading: not restored until the agent asks (load-record.ts). */
  private diedLoading: DiedLoading[] = [];
  private probeLoop: Promise<void> | undefined;
  private readonly sessionFailures: Counter<'namespace' | 'name'>;

  constructor(private readonly d: HostDeps) {
    this.load = d.load ?? defaultLoad;
    this.loadRecord = new LoadRecord(hostLoadingFile(d.paths.runDir));
    // Series names as the agent's /metrics had them (it appends the host's text to its own).
    const endpoint = new EndpointMetrics(this.registry);
    this.sessionFailures = new Counter({ name: 'modeld_host_session_failures_total', help: 'Sessions of the runtime host taken out of the route after a failed probe (and replaced).', labelNames: ['namespace', 'name'] as const, registers: [this.registry] });
    const self = this;
    new Gauge({
      name: 'modeld_host_sessions',
      help: 'Sessions the runtime host holds that take traffic, per model.',
      labelNames: ['namespace', 'name', 'model'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const r of self.routes.values()) if (r instanceof SessionRoute) this.set({ namespace: r.namespace, name: r.name, model: r.modelName }, r.readyCount());
      },
    });
    this.gateway = new Gateway({
      config: d.config,
      log: d.log.child({ part: 'endpoint' }),
      onRequest: (t, status, s) => endpoint.observe(t, status, s),
    });
  }

  /** Listens on the node endpoint, then restores the route table in the background. */
  async start(): Promise<void> {
    mkdirSync(this.d.paths.runDir, { recursive: true });
    this.lastHang = readJson<HostState['lastHang'] & { phase?: string }>(hostHangFile(this.d.paths.runDir));
    if (this.lastHang) this.d.log.error(this.lastHang, 'the previous runtime host was blocked past serving.sessionHangMs and restarted');
    const table = readJson<{ routes?: RouteSpec[]; diedLoading?: DiedLoading[] }>(hostRoutesFile(this.d.paths.runDir));
    const saved = table?.routes ?? [];
    this.diedLoading = Array.isArray(table?.diedLoading) ? table.diedLoading : [];
    this.noteDiedLoading();
    // Every saved route is in the table (answering 503, not ready) before the endpoint opens.
    if (saved.some((s) => s.kind !== 'session')) await loadProxying();
    for (const spec of saved) {
      const route = spec.kind === 'session' ? new SessionRoute(spec, this.d.config.gateway.maxBodyBytes, this.hooks) : new ProxyRoute(spec);
      this.routes.set(routeKey(spec.namespace, spec.name), route);
      this.gateway.setRoute(spec.modelName, route);
    }
    // On disk before any load of this host overwrites the loading record.
    await this.persist();
    this.loadRecord.clear();
    await this.gateway.listen();
    this.watchdog = startHangWatchdog({
      hangMs: this.d.config.serving.sessionHangMs,
      hangFile: hostHangFile(this.d.paths.runDir),
      onError: (err) => this.d.log.error({ err: err.message }, 'the hang watchdog thread failed: a hung session run is no longer caught here'),
    });
    this.probeLoop = this.probeForever();
    void this.restore(saved);
  }

  /** The previous host died in the loads its record names: those versions are not restored. */
  private noteDiedLoading() {
    const prev = this.loadRecord.takePrevious();
    if (!prev) return;
    const hang = this.lastHang;
    for (const l of prev.loads) {
      const key = routeKey(l.namespace, l.name);
      const hung = hang?.phase === 'load' && (hang.model === key || !!hang.models?.includes(key));
      const message = hung
        ? `loading it blocked the runtime host (pid ${prev.pid}) for ${hang.blockedMs} ms, past serving.sessionHangMs, and the host was restarted: not loaded again until the agent asks`
        : `the runtime host (pid ${prev.pid}) crashed while loading it (a native crash in onnxruntime's load, or the process was killed): not loaded again until the agent asks`;
      const died: DiedLoading = { ...l, pid: prev.pid, cause: hung ? 'hang' : 'crash', message };
      this.diedLoading = [...this.diedLoading.filter((d) => !sameLoad(d, l)), died];
      this.d.log.error({ model: key, version: l.version, pid: prev.pid, cause: died.cause }, 'the previous runtime host died while loading this version; it is not restored');
    }
  }

  /** The model's route changed (or went): what a host died loading for it no longer matters. */
  private forgetDiedLoading(key: string) {
    this.diedLoading = this.diedLoading.filter((d) => routeKey(d.namespace, d.name) !== key);
  }

  async whenRestored(): Promise<void> {
    while (this.restoring && !this.closed) await sleep(10);
  }

  private async restore(saved: RouteSpec[]) {
    try {
      for (const spec of saved) {
        const key = routeKey(spec.namespace, spec.name);
        if (spec.kind !== 'session') continue;
        const release = await this.changing.acquire(key);
        try {
          const route = this.routes.get(key);
          if (!(route instanceof SessionRoute) || route.spec !== spec || this.closed) continue;
          const died = this.diedLoading.find((d) => sameLoad(d, spec));
          if (died) {
            route.error = died.message;
            continue;
          }
          try {
            for (let i = 0; i < spec.replicas; i++) route.add(await this.loadSession(spec));
            this.d.log.info({ model: key, version: spec.version, replicas: spec.replicas }, 'restored');
          } catch (err) {
            route.error = `restore failed: ${(err as Error).message}`;
            this.d.log.error({ model: key, version: spec.version, err: (err as Error).message }, 'could not restore a model');
          }
        } finally {
          release();
        }
      }
    } finally {
      this.restoring = false;
    }
  }

  private async loadSession(spec: RouteSpec) {
    const key = routeKey(spec.namespace, spec.name);
    this.loadRecord.begin(spec);
    this.watchdog?.begin(key, 'load');
    try {
      return await loadWarm(this.load, {
        modelDir: spec.versionDir,
        modelName: spec.modelName,
        version: spec.version,
        threads: this.d.config.serving.sessionThreads,
        maxBodyBytes: this.d.config.gateway.maxBodyBytes,
        backend: this.d.config.serving.onnxBackend,
      });
    } finally {
      this.watchdog?.end(key, 'load');
      this.loadRecord.end(spec);
    }
  }

  /** Serves `req` (blue/green, or in place for the same version); `emit` hears the steps. */
  apply(req: RouteRequest, emit: (e: RouteEvent) => void): Promise<void> {
    const key = routeKey(req.namespace, req.name);
    return this.changing.run(key, async () => {
      try {
        await this.doApply(key, req, emit);
      } catch (err) {
        const e = toModeldError(err);
        emit({ event: 'error', code: e.code, message: e.message });
      }
    });
  }

  private async doApply(key: string, req: RouteRequest, emit: (e: RouteEvent) => void) {
    if (this.closed) throw new ModeldError('Cancelled', 'the runtime host is stopping');
    const spec = checkSpec(req, this.d.config.stateDir);
    for (const [k, r] of this.routes) {
      if (k !== key && r.modelName === spec.modelName) throw new ModeldError('StartFailed', `model name "${spec.modelName}" is already served for ${k}`, { details: { modelName: spec.modelName, servedBy: k } });
    }
    const cur = this.routes.get(key);
    const log = this.d.log.child({ model: key, version: spec.version });
    if (cur && sameIdentity(cur.spec, spec) && !(cur instanceof SessionRoute && cur.error)) {
      // Same version: in place (ports of the ready instances, or the number of sessions).
      if (cur instanceof ProxyRoute) {
        cur.setPorts(spec.ports ?? []);
        cur.spec = { ...cur.spec, replicas: spec.replicas };
      } else {
        await this.scaleSessions(cur, spec.replicas, req.drainTimeoutMs);
        log.info({ replicas: spec.replicas }, 'scaled');
      }
      await this.persist();
      emit({ event: 'routed', switched: false });
      emit({ event: 'done', route: this.routeState(cur) });
      return;
    }
    let next: Route;
    if (spec.kind === 'session') {
      const route = new SessionRoute(spec, this.d.config.gateway.maxBodyBytes, this.hooks);
      try {
        for (let i = 0; i < spec.replicas; i++) route.add(await this.loadSession(spec));
      } catch (err) {
        await this.release(route);
        log.warn({ err: (err as Error).message }, 'version did not load; the previous one keeps serving');
        throw new ModeldError('StartFailed', `runtime refused the model: ${(err as Error).message}`);
      }
      next = route;
    } else {
      await loadProxying();
      next = new ProxyRoute(spec);
    }
    if (this.closed) {
      await this.release(next);
      throw new ModeldError('Cancelled', 'the runtime host is stopping');
    }
    // The switch: one assignment; new requests go to the new version from here on.
    this.routes.set(key, next);
    this.gateway.setRoute(spec.modelName, next);
    if (cur && cur.modelName !== spec.modelName) this.gateway.removeRoute(cur.modelName, cur);
    this.forgetDiedLoading(key);
    const saved = this.persist();
    log.info({ kind: spec.kind, replicas: spec.replicas, previous: cur?.version }, 'version serving');
    emit({ event: 'routed', switched: true });
    if (cur) emit({ event: 'drained', left: await this.retire(cur, req.drainTimeoutMs) });
    // Done means on disk: a host restarted from here on serves this version.
    await saved;
    emit({ event: 'done', route: this.routeState(next) });
  }

  private async scaleSessions(route: SessionRoute, replicas: number, drainTimeoutMs: number) {
    while (route.sessions.length < replicas) route.add(await this.loadSession(route.spec));
    const extra = route.sessions.splice(replicas);
    for (const s of extra) s.out = true;
    route.spec.replicas = replicas;
    // Requests already on a removed session finish first.
    await this.drainSessions(extra, drainTimeoutMs);
    await Promise.all(extra.map((s) => s.model.release().catch(() => {})));
  }

  /** Unroutes the model, drains it, releases it. */
  remove(namespace: string, name: string, drainTimeoutMs: number, emit: (e: RouteEvent) => void): Promise<void> {
    const key = routeKey(namespace, name);
    return this.changing.run(key, async () => {
      const cur = this.routes.get(key);
      if (cur) {
        this.routes.delete(key);
        this.gateway.removeRoute(cur.modelName, cur);
      }
      this.forgetDiedLoading(key);
      await this.persist();
      emit({ event: 'routed', switched: !!cur });
      if (cur) emit({ event: 'drained', left: await this.retire(cur, drainTimeoutMs) });
      emit({ event: 'done', route: cur ? this.routeState(cur) : (undefined as never) });
    });
  }

  state(): HostState {
    return {
      pid: process.pid,
      bootId: this.bootId,
      startedAt: this.startedAt,
      restoring: this.restoring,
      endpoint: { bind: this.d.config.gateway.bind, port: this.gateway.port },
      routes: [...this.routes.values()].map((r) => this.routeState(r)),
      ...(this.lastHang ? { lastHang: this.lastHang } : {}),
      ...(this.diedLoading.length ? { diedLoading: this.diedLoading } : {}),
    };
  }

  private routeState(r: Route): RouteState {
    return {
      ...r.spec,
      readyReplicas: r.readyCount(),
      inFlight: r.inFlight(),
      ...(r instanceof SessionRoute ? { sessions: r.ready().map((x) => x.id), backend: backendOf(r.sessions[0]?.model) } : {}),
      ...(r instanceof SessionRoute && r.error ? { error: r.error } : {}),
    };
  }

  /** Stops the endpoint and releases every session. The route table stays on disk. */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    await this.changing.idle();
    await this.probeLoop;
    await this.persisting;
    await this.gateway.close();
    await this.watchdog?.stop();
    for (const r of this.routes.values()) await this.release(r);
    this.routes.clear();
    this.loadRecord.clear(); // a clean stop: no load under way
  }

  private async retire(route: Route, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (route.inFlight() > 0 && Date.now() < deadline && !this.closing.signal.aborted) await sleep(5);
    const left = route.inFlight();
    if (left > 0) this.d.log.warn({ model: routeKey(route.namespace, route.name), version: route.version, inFlight: left }, 'drain timed out; releasing with requests in flight');
    await this.release(route);
    return left;
  }

  private async drainSessions(list: Session[], timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    while (list.some((s) => s.inFlight > 0) && Date.now() < deadline) await sleep(5);
  }

  private async release(route: Route) {
    if (route instanceof ProxyRoute) return route.close();
    const all = route.sessions.splice(0);
    for (const s of all) s.out = true;
    await Promise.all(all.map((s) => s.model.release().catch(() => {})));
  }

  /** Route table to disk (atomic), in order; a failed write is logged and the next one retries. */
  private persist(): Promise<void> {
    const routes = [...this.routes.values()].map((r) => ({ ...r.spec }));
    const diedLoading = this.diedLoading;
    const file = hostRoutesFile(this.d.paths.runDir);
    this.persisting = this.persisting.then(() =>
      writeFileAtomic(file, JSON.stringify({ version: 1, routes, ...(diedLoading.length ? { diedLoading } : {}) })).catch((err: Error) => this.d.log.error({ err: err.message, file }, 'cannot save the route table')),
    );
    return this.persisting;
  }

  /**
   * Health after ready: every idle session answers the warm-up request again every
   * serving.probeIntervalMs. One that fails leaves the route and a fresh session replaces it. A
   * run that hangs never returns here: the hang watchdog restarts the host.
   */
  private async probeForever() {
    const signal = this.closing.signal;
    while (!signal.aborted) {
      await sleep(this.d.config.serving.probeIntervalMs, signal);
      for (const [key, r] of this.routes) {
        if (signal.aborted || !(r instanceof SessionRoute)) continue;
        for (const s of r.ready()) {
          if (s.inFlight > 0) continue; // answering traffic: alive
          const body = warmupBody(s.model);
          if (!body) continue;
          this.watchdog?.begin(key, 'run');
          const failed = await s.model.infer(body, {}).then(
            (reply) => (reply.status === 200 ? undefined : `status ${reply.status}`),
            (err: Error) => err?.message ?? String(err),
          );
          this.watchdog?.end(key, 'run');
          if (failed && !s.out && this.routes.get(key) === r) void this.replaceSession(key, r, s, failed);
        }
      }
    }
  }

  private async replaceSession(key: string, route: SessionRoute, s: Session, why: string) {
    s.out = true;
    this.sessionFailures.inc({ namespace: route.namespace, name: route.name });
    this.d.log.error({ model: key, version: route.version, err: why }, 'session failed its probe: out of the route, replacing it');
    await this.changing.run(key, async () => {
      const i = route.sessions.indexOf(s);
      if (i >= 0) route.sessions.splice(i, 1);
      await s.model.release().catch(() => {});
      if (this.routes.get(key) !== route || this.closed) return;
      try {
        route.add(await this.loadSession(route.spec));
      } catch (err) {
        route.error = `a replacement session did not load: ${(err as Error).message}`;
        this.d.log.error({ model: key, err: (err as Error).message }, 'replacement session failed');
      }
    });
  }

  /** For the sessions: errors to log, and the model being asked (so a hang names it). */
  private readonly hooks = {
    error: (err: unknown) => this.d.log.error({ err: (err as Error)?.stack ?? String(err) }, 'inference failed'),
    begin: (key: string) => this.watchdog?.begin(key, 'run'),
    end: (key: string) => this.watchdog?.end(key, 'run'),
  };

  /** Removes the hang record once the agent has seen it (it is reported once). */
  clearHang() {
    rmSync(hostHangFile(this.d.paths.runDir), { force: true });
  }
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

const backendOf = (m: unknown) => ((m as { backend?: string } | undefined)?.backend ?? (m ? 'native' : undefined));

/** The request's fields, checked again here: the host trusts no path or name it is given. */
function checkSpec(req: RouteRequest, stateDir: string): RouteSpec {
  if (req.kind !== 'session' && req.kind !== 'proxy') throw new ModeldError('BadRequest', `kind must be "session" or "proxy"`);
  validateTarget({ ...req }, stateDir);
  const ports = req.ports ?? [];
  if (!Array.isArray(ports) || !ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) throw new ModeldError('BadRequest', 'ports must be loopback port numbers');
  if (typeof req.runtime !== 'string' || !req.runtime) throw new ModeldError('BadRequest', 'runtime is required');
  if (!Number.isInteger(req.drainTimeoutMs) || req.drainTimeoutMs < 0) throw new ModeldError('BadRequest', 'drainTimeoutMs must be a non-negative integer');
  return {
    namespace: req.namespace,
    name: req.name,
    modelName: req.modelName,
    version: req.version,
    ...(req.sha256 ? { sha256: req.sha256 } : {}),
    versionDir: req.versionDir,
    kind: req.kind,
    replicas: req.replicas,
    ...(req.kind === 'proxy' ? { ports: [...ports] } : {}),
    runtime: req.runtime,
  };
}
