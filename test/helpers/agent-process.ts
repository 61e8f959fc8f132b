import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';

// The real agent as a child process (`modeld run`), from source through tsx, as a test peer:
// it can be killed with SIGKILL at any instant and started again on the same state directory.

const ROOT = resolve(import.meta.dirname, '../..');

export interface AgentProcess {
  child: ChildProcess;
  /** JSON log lines written so far. */
  logs: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** The last 8000 characters the process wrote to stderr (a crash's stack ends up here). */
  stderr(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Writes `config` as YAML beside the state directory and starts `modeld run` on it. */
export function startAgentProcess(config: Record<string, unknown> & { stateDir: string }, args: string[] = []): AgentProcess {
  const configFile = join(dirname(config.stateDir), `config-${Math.random().toString(36).slice(2)}.yaml`);
  mkdirSync(dirname(configFile), { recursive: true });
  // Each agent its own admin socket (beside its state directory) unless the test names one.
  const admin = { socket: join(dirname(config.stateDir), `admin-${Math.random().toString(36).slice(2, 8)}.sock`), ...(config.admin as object | undefined) };
  writeFileSync(configFile, stringify({ ...config, admin }));
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), '--config', configFile, 'run', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MODELD_CONFIG: '' },
  });
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
  };
}
