import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { spawnTree } from './process-tree.js';

// The real agent as a child process (`modeld run`), from source through tsx, as a test peer:
// it can be killed with SIGKILL at any instant and started again on the same state directory.
// Its runtimes outlive a kill (they lead their own process groups, as the kill -9 tests need);
// end() ends the agent with every runtime it ever started.

const ROOT = resolve(import.meta.dirname, '../..');

export interface AgentProcess {
  child: ChildProcess;
  /** JSON log lines written so far. */
  logs: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** The last 8 kB the agent wrote on stderr (a stack when it died). */
  stderr(): string;
  /** Sends `signal` to the agent alone (a crash, or a stop it handles) and waits for its exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Teardown: SIGKILL to the agent and every process it started; resolves when all are gone. */
  end(): Promise<void>;
}

/** Writes `config` as YAML beside the state directory and starts `modeld run` on it. */
export function startAgentProcess(config: Record<string, unknown> & { stateDir: string }, args: string[] = [], opts: { nodeArgs?: string[]; env?: Record<string, string>; wrap?: string[] } = {}): AgentProcess {
  const configFile = join(dirname(config.stateDir), `config-${Math.random().toString(36).slice(2)}.yaml`);
  mkdirSync(dirname(configFile), { recursive: true });
  // Each agent its own admin socket (beside its state directory) unless the test names one.
  const admin = { socket: join(dirname(config.stateDir), `admin-${Math.random().toString(36).slice(2, 8)}.sock`), ...(config.admin as object | undefined) };
  writeFileSync(configFile, stringify({ ...config, admin }));
  // `wrap`: a command that execs the agent (setpriv as the service user).
  const [cmd, ...rest] = [...(opts.wrap ?? []), process.execPath, ...(opts.nodeArgs ?? []), '--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), '--config', configFile, 'run', ...args];
  const tree = spawnTree(cmd, rest, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MODELD_CONFIG: '', ...opts.env },
  });
  const child = tree.child;
  const logs: Array<Record<string, unknown>> = [];
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-8000)));
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      if (code && code !== 0 && process.env.DEBUG_AGENT) console.error(stderr);
      r(code);
    }),
  );
  return {
    child,
    logs,
    exited,
    stderr: () => stderr,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
    end: () => tree.end(),
  };
}
