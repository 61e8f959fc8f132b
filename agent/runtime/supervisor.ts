import { sleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import { Instance } from './instance.js';
import type { PortAllocator } from './ports.js';
import type { RuntimePlan } from './runtime-plan.js';

// The instances of one model version (`replicas` of them). The group is what the gateway routes
// to and what a switch starts, waits for, drains and stops.

export interface GroupDeps {
  namespace: string;
  name: string;
  modelName: string;
  version: string;
  plan: RuntimePlan;
  ports: PortAllocator;
  runDir: string;
  serving: Config['serving'];
  log: Logger;
  /** Index of the first instance: past an older group of the same version, so pid files differ. */
  firstIndex?: number;
  /** An instance failed for good (CrashLoop, StartFailed): called once per group. */
  onFailure: (group: InstanceGroup, err: ModeldError) => void;
  /** Restarts of its instances since the last call (metrics), told at the instance's next state change. */
  onRestarts?: (group: InstanceGroup, count: number) => void;
  /** The set of ready instances changed (one left the route or came back). */
  onReadyChange?: (group: InstanceGroup) => void;
}

export class InstanceGroup {
  readonly instances: Instance[] = [];
  failure: ModeldError | undefined;
  private readonly waiters = new Set<() => void>();
  nextIndex: number;
  private stopped = false;
  private readonly restartsSeen = new WeakMap<Instance, number>();

  constructor(private readonly d: GroupDeps) {
    this.nextIndex = d.firstIndex ?? 0;
  }

  get namespace() {
    return this.d.namespace;
  }
  get name() {
    return this.d.name;
  }
  get modelName() {
    return this.d.modelName;
  }
  get version() {
    return this.d.version;
  }
  get runtime() {
    return this.d.plan.runtime;
  }

  /** Starts instances until there are `replicas`. */
  start(replicas: number): void {
    while (this.instances.length < replicas) {
      const inst = new Instance({
        plan: this.d.plan,
        ports: this.d.ports,
        runDir: this.d.runDir,
        namespace: this.d.namespace,
        name: this.d.name,
        version: this.d.version,
        index: this.nextIndex++,
        serving: this.d.serving,
        log: this.d.log,
        onChange: (i) => this.changed(i),
      });
      this.instances.push(inst);
      inst.start();
    }
  }

  /** Instances the gateway may send requests to. */
  ready(): Instance[] {
    return this.instances.filter((i) => i.state === 'ready' && i.pool);
  }

  readyCount(): number {
    return this.ready().length;
  }

  /** Loopback ports of the ready instances: what the runtime host proxies to. */
  readyPorts(): number[] {
    return this.ready().map((i) => i.port);
  }

  /** The slowest instance's time from spawn to ready (the runtime's own start time), ms. */
  runtimeStartMs(): number {
    return Math.max(0, ...this.instances.map((i) => (i.readyAt ? i.readyAt - i.spawnedAt : 0)));
  }

  inFlight(): number {
    return this.instances.reduce((n, i) => n + i.inFlight, 0);
  }

  /**
   * Resolves when every instance is ready; rejects with the group's failure (CrashLoop,
   * StartFailed), NotReady after `timeoutMs`, or Cancelled when `signal` aborts.
   */
  waitReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (err?: ModeldError) => {
        this.waiters.delete(check);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (this.failure) return finish(this.failure);
        if (this.stopped) return finish(new ModeldError('Cancelled', `version ${this.d.version} was stopped while starting`));
        if (this.instances.every((i) => i.state === 'ready')) finish();
      };
      const onAbort = () => finish(new ModeldError('Cancelled', `start of version ${this.d.version} cancelled`));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      timer = setTimeout(() => {
        const notReady = this.instances.filter((i) => i.state !== 'ready');
        const tail = notReady.map((i) => i.outputTail()).find((t) => t);
        finish(
          new ModeldError('NotReady', `version ${this.d.version}: ${notReady.length} of ${this.instances.length} instances not ready within ${timeoutMs} ms${tail ? `: ${tail.split('\n').slice(-3).join(' | ')}` : ''}`, {
            details: { runtime: this.d.plan.runtime, timeoutMs },
          }),
        );
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Waits until no request is in flight here, at most `timeoutMs`; returns what was left. */
  async drain(timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight() > 0 && Date.now() < deadline && !signal?.aborted) await sleep(10, signal);
    return this.inFlight();
  }

  /** Stops instances past `replicas` (highest index first). */
  async scaleDown(replicas: number): Promise<void> {
    const extra = this.instances.splice(replicas);
    await Promise.all(extra.map((i) => i.stop()));
    // The group is healthy again when the failed instance was one of those removed.
    if (this.failure && !this.instances.some((i) => i.state === 'failed')) this.failure = undefined;
    this.nextIndex = this.instances.length ? Math.max(...this.instances.map((i) => i.index)) + 1 : this.nextIndex;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.instances.map((i) => i.stop()));
    for (const w of [...this.waiters]) w();
  }

  private changed(inst: Instance) {
    const seen = this.restartsSeen.get(inst) ?? 0;
    if (inst.restarts > seen) {
      this.restartsSeen.set(inst, inst.restarts);
      this.d.onRestarts?.(this, inst.restarts - seen);
    }
    if (inst.state === 'failed' && !this.failure && !this.stopped) {
      this.failure = inst.failure ?? new ModeldError('StartFailed', `instance ${inst.index} failed`);
      this.d.onFailure(this, this.failure);
    }
    for (const w of [...this.waiters]) w();
    const ports = this.readyPorts().join(',');
    if (ports !== this.lastPorts) {
      this.lastPorts = ports;
      this.d.onReadyChange?.(this);
    }
  }

  private lastPorts = '';
}
