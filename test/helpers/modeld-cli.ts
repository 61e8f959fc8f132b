import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.js';
import { spawnTree } from './process-tree.js';

// `modeld <command>` as a user runs it: a child process from source through tsx, with a config
// file, its exit code, stdout and stderr.

const ROOT = resolve(import.meta.dirname, '../..');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment without MODELD_* overrides from the caller's shell. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MODELD_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Runs one command to its end, as a process tree (ended with the test file if the test is
 * cut short). Killed with everything it started past `timeoutMs` (below the test timeout).
 */
export async function runCli(
  configFile: string | undefined,
  args: string[],
  opts: { input?: string; env?: Record<string, string>; timeoutMs?: number; wrap?: string[] } = {},
): Promise<CliResult> {
  const argv = ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), ...(configFile ? ['--config', configFile] : []), ...args];
  // `wrap`: a command that execs the CLI (setpriv as another user, with fewer capabilities).
  const [cmd, ...rest] = [...(opts.wrap ?? []), process.execPath, ...argv];
  const tree = spawnTree(cmd, rest, { cwd: ROOT, env: cleanEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
  const { child } = tree;
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin!.on('error', () => {}); // a command that exits without reading its input
  child.stdin!.end(opts.input);
  const timer = setTimeout(() => void tree.end(), opts.timeoutMs ?? 150_000);
  try {
    const { code } = await tree.exited;
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
    await tree.end(); // whatever it started and left running
  }
}

/** A long-running command (`events --follow`, `status --watch`): its output so far, and the tree to signal or end. */
export function startCli(configFile: string | undefined, args: string[], opts: { env?: Record<string, string> } = {}) {
  const argv = ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), ...(configFile ? ['--config', configFile] : []), ...args];
  const tree = spawnTree(process.execPath, argv, { cwd: ROOT, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  tree.child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  tree.child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return { tree, stdout: () => stdout, stderr: () => stderr };
}

/** The argv that runs the CLI from source, for shells and wrappers (`node --import tsx agent/cli/index.ts`). */
export const CLI_ARGV = [process.execPath, '--import', 'tsx', join(ROOT, 'agent/cli/index.ts')];

/**
 * A node with no reachable broker (a free port nobody listens on), its state and admin socket
 * under `work`: the offline node most CLI tests start from.
 */
export async function offlineNodeConfig(work: string, extra: Record<string, unknown> = {}): Promise<Record<string, unknown> & { stateDir: string }> {
  return {
    node: { name: 'edge-1' },
    broker: { url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMs: 60_000 },
    stateDir: join(work, 'state'),
    admin: { socket: join(work, 'admin.sock') },
    ...extra,
  };
}

/** Writes a config file for the CLI (and the daemon: pass the same object to startAgentProcess). */
export function writeConfig(config: Record<string, unknown> & { stateDir: string }, file = join(dirname(config.stateDir), 'config.yaml')): string {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, stringify(config));
  return file;
}

/** The one-line-error contract: non-zero exit, exactly one line on stderr starting "modeld: ", no stack. */
export function expectOneLineError(r: CliResult): string {
  const lines = r.stderr.trimEnd().split('\n');
  if (r.code === 0) throw new Error(`expected a failure, got exit 0: ${r.stdout}`);
  if (lines.length !== 1 || !lines[0].startsWith('modeld: ') || /\n\s+at /.test(r.stderr)) {
    throw new Error(`expected one error line on stderr, got:\n${r.stderr}`);
  }
  return lines[0];
}

/** An InferenceModel resource for `modeld apply -f`; URLs default to a closed port (never fetched when seeded). */
export function inferenceModel(
  name: string,
  versions: Array<{ version: string; sha256?: string; url?: string }>,
  opts: { targetVersion?: string; namespace?: string; replicas?: number } = {},
) {
  return {
    apiVersion: 'ai.kubeedge.io/v1alpha1',
    kind: 'InferenceModel',
    metadata: { name, namespace: opts.namespace ?? 'default' },
    spec: {
      modelName: name,
      deployToLayer: 'edge' as const,
      frameworkType: 'onnx',
      manifest: versions.map((v) => ({ version: v.version, downloadURL: v.url ?? `http://127.0.0.1:9/never/${v.version}.tar.gz`, ...(v.sha256 ? { sha256sum: v.sha256 } : {}) })),
      ...(opts.targetVersion ? { targetVersion: opts.targetVersion } : {}),
      ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}),
    },
  };
}

/** Writes `doc` as YAML to `file` and returns the path. */
export function writeYaml(file: string, doc: unknown): string {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, stringify(doc));
  return file;
}
