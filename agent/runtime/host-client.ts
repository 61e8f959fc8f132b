import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { ModeldError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { isRunning } from './pidfiles.js';
import { hostSocketPath, type HostState, type RouteEvent, type RouteRequest } from '../host/protocol.js';

// The agent's end of the control channel to the runtime host (agent/host/protocol.ts), and, when
// serving.hostStart is "agent", the host's starter: detached (its own session and process group),
// so that the agent's death, even a SIGKILL of the agent's whole process group, does not end it.

const LOG_ROTATE_BYTES = 10 * 1024 * 1024;

/**
 * V8 flags of the runtime host (bin/modeld passes the same under systemd): a young generation of
 * 2 MiB semi-spaces instead of V8's up to 16 MiB, ~8 MiB less private memory (measured with 10
 * models) for no throughput change that the serving benchmark could tell from noise.
 */
export const HOST_NODE_FLAGS = ['--max-semi-space-size=2'];

/** The host's entry and the node arguments to run it, from source (tsx) or from dist. */
export function hostCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    return [process.execPath, ...HOST_NODE_FLAGS, '--import', pathToFileURL(tsx).href, join(here, '..', '..', 'host', 'main.ts')];
  }
  return [process.execPath, ...HOST_NODE_FLAGS, join(here, '..', '..', 'host', 'main.js')];
}

/** The environment a started host gets: the agent's own settings (MODELD_*) and systemd's left out. */
function hostEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('MODELD_') && !['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'].includes(k)) out[k] = v;
  return out;
}

export class HostClient {
  readonly socketPath: string;
  /** The host this agent started (only while this agent lives). */
  child: ChildProcess | undefined;

  constructor(private readonly d: { config: Config; paths: StatePaths; log: Logger }) {
    this.socketPath = hostSocketPath(d.paths.runDir);
  }

  /** One JSON request; rejects when the socket does not answer in `timeoutMs`. */
  call<T>(method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number; body: T }> {
    return new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        { socketPath: this.socketPath, path, method, timeout: timeoutMs, headers: text ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            try {
              resolve({ status: res.statusCode ?? 0, body: (res.headers['content-type']?.includes('json') ? JSON.parse(raw) : raw) as T });
            } catch (err) {
              reject(err as Error);
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`runtime host did not answer ${method} ${path} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(text);
    });
  }

  state(timeoutMs = 5000): Promise<HostState> {
    return this.call<HostState>('GET', '/state', undefined, timeoutMs).then((r) => r.body);
  }

  /** A route change: the events as they come; resolves with the last ("done"), throws the host's error. */
  async change(method: 'POST' | 'DELETE', path: string, body: RouteRequest | undefined, onEvent: (e: RouteEvent) => void): Promise<RouteEvent & { event: 'done' }> {
    const events = await new Promise<RouteEvent[]>((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const got: RouteEvent[] = [];
      const req = request({ socketPath: this.socketPath, path, method, headers: text ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {} }, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          buf += c;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (!line) continue;
            try {
              const e = JSON.parse(line) as RouteEvent;
              got.push(e);
              onEvent(e);
            } catch {
              /* not ours */
            }
          }
        });
        res.on('end', () => {
          if (res.statusCode !== 200) {
            try {
              got.push({ event: 'error', code: res.statusCode === 400 ? 'BadRequest' : 'Internal', message: JSON.parse(buf).error });
            } catch {
              got.push({ event: 'error', code: 'Internal', message: `runtime host answered ${res.statusCode}` });
            }
          }
          resolve(got);
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(text);
    }).catch((err: Error) => {
      throw new ModeldError('StartFailed', `runtime host unreachable: ${err.message}`, { retryable: true, cause: err });
    });
    const last = events.at(-1);
    if (last?.event === 'error') throw new ModeldError(last.code as ErrorCode, last.message);
    if (last?.event !== 'done') throw new ModeldError('StartFailed', 'the runtime host ended the change without a result (it restarted?)', { retryable: true });
    return last;
  }

  /** Waits until the host answers, at most `timeoutMs`. */
  async waitAnswering(timeoutMs: number, signal?: AbortSignal): Promise<HostState> {
    const deadline = Date.now() + timeoutMs;
    let lastErr: unknown;
    while (Date.now() < deadline && !signal?.aborted) {
      try {
        return await this.state(2000);
      } catch (err) {
        lastErr = err;
        if (this.child && (this.child.exitCode !== null || this.child.signalCode !== null)) break;
      }
      await sleep(25, signal);
    }
    throw new ModeldError('StartFailed', `the runtime host did not answer on ${this.socketPath} within ${timeoutMs} ms: ${(lastErr as Error)?.message ?? 'stopped'}`, { retryable: true });
  }

  /** Starts a host detached, its output appended to <runDir>/host.log. */
  spawn(): ChildProcess {
    const run = this.d.paths.runDir;
    mkdirSync(run, { recursive: true });
    // The host reads the agent's serving settings from here (never the broker's credentials).
    const { stateDir, gateway, serving, log, node } = this.d.config;
    const configFile = join(run, 'host-config.json');
    writeFileSync(`${configFile}.tmp`, JSON.stringify({ stateDir, gateway, serving, log, node: { address: node.address } }), { mode: 0o600 });
    renameSync(`${configFile}.tmp`, configFile);
    const logFile = join(run, 'host.log');
    try {
      if (statSync(logFile).size > LOG_ROTATE_BYTES) renameSync(logFile, `${logFile}.1`);
    } catch {
      /* none yet */
    }
    const fd = openSync(logFile, 'a', 0o640);
    const [cmd, ...args] = hostCommand();
    try {
      const child = spawn(cmd, [...args, '--config', configFile], { detached: true, stdio: ['ignore', fd, fd], env: hostEnv(process.env) });
      child.unref();
      child.on('error', (err) => this.d.log.error({ err: err.message }, 'cannot start the runtime host'));
      this.child = child;
      this.d.log.info({ pid: child.pid, log: logFile }, 'started the runtime host');
      return child;
    } finally {
      closeSync(fd);
    }
  }

  /** Asks the host to stop (tests, benchmarks) and waits until it is gone. */
  async shutdown(timeoutMs = 15_000): Promise<void> {
    let pid: number | undefined;
    try {
      pid = (await this.state(2000)).pid;
      await this.call('POST', '/shutdown', undefined, 2000);
    } catch {
      return; // nothing answers
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && pid && alive(pid)) await sleep(20);
    if (pid && alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

const alive = isRunning;
