import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';

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

export function runCli(configFile: string | undefined, args: string[], opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const argv = ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), ...(configFile ? ['--config', configFile] : []), ...args];
  return new Promise((resolveRun) => {
    const child = execFile(
      process.execPath,
      argv,
      { cwd: ROOT, env: cleanEnv(opts.env), timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code: unknown = err ? (err as { code?: unknown }).code : 0;
        resolveRun({ code: typeof code === 'number' ? code : (child.exitCode ?? null), stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
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
