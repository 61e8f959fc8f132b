import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import { sleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import { EXIT_UNSERVABLE } from './exit-codes.js';
import { pidFileName, procStartTime, removePidFile, writePidFile } from './pidfiles.js';
import type { PortAllocator } from './ports.js';
import type { RuntimePlan } from './runtime-plan.js';

// One supervised runtime process: spawn, probe until ready, restart with exponential backoff on
// exit, give up (CrashLoop) after serving.crashLoopRestarts restarts in a row, stop with SIGTERM
// then SIGKILL. Each process leads its own process group, so the whole tree is signalled.

export type InstanceState = 'starting' | 'ready' | 'restarting' | 'stopping' | 'stopped' | 'failed';

export interface InstanceDeps {
  plan: RuntimePlan;
  ports: PortAllocator;
  runDir: string;
  namespace: string;
  name: string;
  version: string;
  index: number;
  serving: Config['serving'];
  log: Logger;
  /** Called on every state change. */
  onChange: (inst: Instance) => void;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

const TAIL_LINES = 12;
const MAX_LINE = 4096;
const BACKOFF_CAP_MS = 60_000;

/** A crash is forgiven once the instance has stayed ready this long. */
const stableMs = (s: Config['serving']) => Math.max(10_000, s.restartBackoffMs * 10);

/** GET http://127.0.0.1:port/path -> status code, or undefined when nothing answers. */
function probeOnce(port: number, path: string, signal: AbortSignal, timeoutMs = 2000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: timeoutMs, signal }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

export class Instance {
  state: InstanceState = 'starting';
  port = 0;
  pid: number | undefined;
  /** Requests the gateway has sent here that have not finished. */
  inFlight = 0;
  /** The gateway's connection pool to this instance; set while ready. */
  pool: Pool | undefined;
  failure: ModeldError | undefined;
  restarts = 0;
  /** performance.now() at the last spawn and when that process was first seen ready. */
  spawnedAt = 0;
  readyAt = 0;

  private child: ChildProcess | undefined;
  private exited: Promise<Exit> | undefined;
  private readonly stopCtl = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly tail: string[] = [];
  private readonly log: Logger;
  private readonly pidFile: string;

  constructor(private readonly d: InstanceDeps) {
    this.log = d.log.child({ model: `${d.namespace}/${d.name}`, version: d.version, instance: d.index });
    this.pidFile = pidFileName(d.namespace, d.name, d.version, d.index);
  }

  get index(): number {
    return this.d.index;
  }

  start(): void {
    this.loop ??= this.run().catch((err: unknown) => this.fail(new ModeldError('StartFailed', `supervisor error: ${(err as Error)?.message}`, { cause: err })));
  }

  /** SIGTERM the process group, SIGKILL after serving.stopGraceMs; resolves when it is gone. */
  async stop(): Promise<void> {
    if (this.state !== 'failed') this.setState('stopping');
    this.stopCtl.abort();
    await this.killChild();
    await this.loop;
    this.cleanupAfterExit();
    if (this.port) this.d.ports.release(this.port);
    if (this.state !== 'failed') this.setState('stopped');
  }

  /** The last lines the runtime wrote, for error messages. */
  outputTail(): string {
    return this.tail.join('\n');
  }

  private setState(s: InstanceState) {
    if (this.state === s) return;
    this.state = s;
    this.d.onChange(this);
  }

  private fail(err: ModeldError) {
    this.failure = err;
    if (this.port) this.d.ports.release(this.port);
    this.log.error({ code: err.code, err: err.message }, 'instance failed');
    this.setState('failed');
  }

  private async run(): Promise<void> {
    const signal = this.stopCtl.signal;
    let failures = 0;
    while (!signal.aborted) {
      this.setState(failures === 0 ? 'starting' : 'restarting');
      const port = this.d.serving.basePort === 0 || this.port === 0 ? await this.d.ports.allocate() : this.port;
      if (this.port && this.port !== port) this.d.ports.release(this.port);
      this.port = port;
      if (signal.aborted) break;
      const exited = this.spawnChild(port);
      const outcome = await Promise.race([this.waitReady(port, signal), exited]);
      let reason: string;
      if (signal.aborted) break;
      if (outcome === 'ready') {
        this.pool = new Pool(`http://127.0.0.1:${port}`, { pipelining: 1, keepAliveTimeout: 30_000 });
        const readyAt = Date.now();
        this.readyAt = performance.now();
        this.log.info({ port, pid: this.pid }, 'instance ready');
        this.setState('ready');
        // Health after ready: probed while it serves; a hung one leaves the route and is restarted.
        const ex = await Promise.race([exited, this.probeWhileReady(port, signal)]);
        this.dropPool();
        if (signal.aborted) break;
        if (Date.now() - readyAt >= stableMs(this.d.serving)) failures = 0;
        if (ex === 'unresponsive') {
          reason = `stopped answering ${this.d.plan.readyPath} (${this.d.serving.probeFailures} probes in a row)`;
          this.setState('restarting');
          await this.killChild();
        } else {
          reason = `exited (${describeExit(ex)}) after being ready`;
        }
      } else if (outcome === 'timeout') {
        reason = `not ready within ${this.d.plan.startTimeoutMs} ms`;
        await this.killChild();
      } else {
        const ex = outcome;
        this.cleanupAfterExit();
        if (ex.error) return this.fail(new ModeldError('StartFailed', `cannot start ${this.d.plan.argv(port)[0]}: ${ex.error.message}`, { cause: ex.error }));
        if (ex.code === EXIT_UNSERVABLE) {
          return this.fail(new ModeldError('StartFailed', `runtime refused the model: ${this.outputTail() || describeExit(ex)}`, { details: { exit: ex.code } }));
        }
        reason = `exited (${describeExit(ex)}) before becoming ready`;
      }
      this.cleanupAfterExit();
      failures++;
      this.restarts++;
      this.log.warn({ failures, reason, tail: this.outputTail() }, 'instance stopped unexpectedly');
      if (failures > this.d.serving.crashLoopRestarts) {
        const tail = this.outputTail();
        return this.fail(
          new ModeldError('CrashLoop', `instance ${this.d.index} ${reason}, ${failures} times in a row${tail ? `: ${tail.split('\n').slice(-3).join(' | ')}` : ''}`, {
            details: { failures, instance: this.d.index },
          }),
        );
      }
      const backoff = Math.min(BACKOFF_CAP_MS, this.d.serving.restartBackoffMs * 2 ** (failures - 1));
      await sleep(backoff, signal);
    }
  }

  private spawnChild(port: number): Promise<Exit> {
    const argv = this.d.plan.argv(port);
    this.tail.length = 0;
    let child: ChildProcess;
    try {
      child = spawn(argv[0], argv.slice(1), {
        detached: true, // own process group: stop and reap kill the whole tree
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...runtimeEnv(process.env), ...this.d.plan.env },
        shell: false,
      });
    } catch (err) {
      this.exited = Promise.resolve({ code: null, signal: null, error: err as Error });
      return this.exited;
    }
    this.child = child;
    this.pid = child.pid;
    this.spawnedAt = performance.now();
    this.readyAt = 0;
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    this.exited = new Promise<Exit>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => {
        // Let the last lines on stdout/stderr arrive (the reason of a refusal), but do not wait
        // on helpers that may still hold the pipes.
        const t = setTimeout(() => resolve({ code, signal }), 250);
        void closed.then(() => {
          clearTimeout(t);
          resolve({ code, signal });
        });
      });
    });
    if (child.pid) {
      writePidFile(this.d.runDir, this.pidFile, {
        pid: child.pid,
        argv,
        startTime: procStartTime(child.pid),
        model: `${this.d.namespace}/${this.d.name}`,
        version: this.d.version,
        instance: this.d.index,
      });
    }
    this.pipeLines(child.stdout!, 'stdout');
    this.pipeLines(child.stderr!, 'stderr');
    const pid = child.pid;
    // The leader is gone: signal what may remain of its group.
    void this.exited.then(() => {
      if (pid) killGroup(pid, 'SIGKILL');
    });
    return this.exited;
  }

  private pipeLines(stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr') {
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', (raw) => {
      const line = raw.length > MAX_LINE ? `${raw.slice(0, MAX_LINE)}…` : raw;
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
      if (name === 'stderr') this.log.warn({ stream: name }, line);
      else this.log.info({ stream: name }, line);
    });
    rl.on('error', () => {});
  }

  private async waitReady(port: number, signal: AbortSignal): Promise<'ready' | 'timeout'> {
    const deadline = Date.now() + this.d.plan.startTimeoutMs;
    const child = this.child;
    let interval = 25;
    while (!signal.aborted && Date.now() < deadline) {
      if (child && child.exitCode === null && child.signalCode === null) {
        const status = await probeOnce(port, this.d.plan.readyPath, signal);
        if (status === 200) return 'ready';
      } else if (child) {
        // exited: the race in run() takes the exit; never claim ready for a dead process
        await new Promise<void>(() => {});
      }
      await sleep(Math.min(interval, Math.max(0, deadline - Date.now())), signal);
      interval = Math.min(100, interval * 1.5);
    }
    return 'timeout';
  }

  /** Resolves 'unresponsive' after serving.probeFailures failed probes in a row; never while they pass. */
  private async probeWhileReady(port: number, signal: AbortSignal): Promise<'unresponsive'> {
    const s = this.d.serving;
    let failed = 0;
    while (!signal.aborted) {
      await sleep(s.probeIntervalMs, signal);
      if (signal.aborted) break;
      const status = await probeOnce(port, this.d.plan.readyPath, signal, s.probeTimeoutMs);
      failed = status === 200 ? 0 : failed + 1;
      if (failed > 0) this.log.warn({ port, status, failed }, 'instance probe failed');
      if (failed >= s.probeFailures) return 'unresponsive';
    }
    return new Promise<never>(() => {}); // stopping: the exit decides
  }

  private async killChild(): Promise<void> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited || !child.pid) return;
    if (child.exitCode === null && child.signalCode === null) {
      killGroup(child.pid, 'SIGTERM');
      const grace = new Promise<'grace'>((r) => {
        const t = setTimeout(() => r('grace'), this.d.serving.stopGraceMs);
        void exited.then(() => clearTimeout(t));
      });
      if ((await Promise.race([exited, grace])) === 'grace') {
        this.log.warn({ pid: child.pid, graceMs: this.d.serving.stopGraceMs }, 'instance did not stop on SIGTERM: SIGKILL');
        killGroup(child.pid, 'SIGKILL');
        await exited;
      }
    }
    this.cleanupAfterExit();
  }

  private dropPool() {
    const pool = this.pool;
    this.pool = undefined;
    if (pool) void pool.destroy().catch(() => {});
  }

  private cleanupAfterExit() {
    this.dropPool();
    if (this.pid) removePidFile(this.d.runDir, this.pidFile, this.pid);
    if (this.d.serving.basePort === 0 && this.port) {
      this.d.ports.release(this.port);
    }
  }
}

/** The agent's environment without its own settings (MODELD_*: broker credentials and the like). */
function runtimeEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('MODELD_')) out[k] = v;
  return out;
}

function killGroup(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(-pid, sig);
  } catch {
    /* already gone */
  }
}

function describeExit(ex: Exit): string {
  if (ex.error) return ex.error.message;
  return ex.signal ? `signal ${ex.signal}` : `code ${ex.code}`;
}
