import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../shared/sleep.js';
import type { Logger } from '../log.js';

// One pid file per running instance, so that an agent killed with -9 does not leave runtimes
// behind: at start, reapOrphans() kills what the files name — only after checking that the pid
// still runs the same command line and started at the same time (pids are reused).

export interface PidRecord {
  pid: number;
  argv: string[];
  /** /proc/<pid>/stat start time (clock ticks since boot); absent where /proc is not. */
  startTime?: string;
  model: string;
  version: string;
  instance: number;
}

export const pidFileName = (namespace: string, name: string, version: string, instance: number) =>
  `${namespace}_${name}_${version}_${instance}.pid`;

export function writePidFile(runDir: string, file: string, rec: PidRecord): void {
  mkdirSync(runDir, { recursive: true });
  const tmp = join(runDir, `.${file}.tmp`);
  writeFileSync(tmp, JSON.stringify(rec));
  renameSync(tmp, join(runDir, file));
}

/** Removes the pid file, only if it still names `pid` (when given): a newer instance may own the name. */
export function removePidFile(runDir: string, file: string, pid?: number): void {
  const path = join(runDir, file);
  if (pid !== undefined) {
    try {
      if ((JSON.parse(readFileSync(path, 'utf8')) as PidRecord).pid !== pid) return;
    } catch {
      /* unreadable or gone: remove below */
    }
  }
  rmSync(path, { force: true });
}

export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may hold spaces, so count from its closing paren.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function procCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').slice(0, -1);
  } catch {
    return undefined;
  }
}

/** Is `pid` a running process? A zombie (exited, not yet reaped by its parent) is not. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: kill(0) said it exists
  }
}
const alive = isRunning;

const killGroup = (pid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  }
};

/** Is `rec` still the process it names (same argv, same start time)? */
export function isSameProcess(rec: PidRecord): boolean {
  if (!alive(rec.pid)) return false;
  const cmd = procCmdline(rec.pid);
  if (!cmd || cmd.length !== rec.argv.length || cmd.some((a, i) => a !== rec.argv[i])) return false;
  return rec.startTime === undefined || procStartTime(rec.pid) === rec.startTime;
}

/**
 * Kills the runtime process groups named by pid files in `runDir` that are still the same
 * processes (SIGTERM, then SIGKILL after `graceMs`), and removes every pid file. Returns the
 * pids it killed.
 */
export async function reapOrphans(runDir: string, opts: { log?: Logger; graceMs?: number } = {}): Promise<number[]> {
  let files: string[];
  try {
    files = readdirSync(runDir).filter((f) => f.endsWith('.pid') || f.endsWith('.pid.tmp'));
  } catch {
    return [];
  }
  const victims: PidRecord[] = [];
  for (const f of files) {
    const path = join(runDir, f);
    try {
      const rec = JSON.parse(readFileSync(path, 'utf8')) as PidRecord;
      if (Number.isInteger(rec.pid) && rec.pid > 1 && Array.isArray(rec.argv) && isSameProcess(rec)) victims.push(rec);
      else opts.log?.debug({ file: f, pid: rec.pid }, 'stale pid file: process gone or not ours');
    } catch (err) {
      opts.log?.warn({ file: f, err: (err as Error).message }, 'unreadable pid file removed');
    }
    rmSync(path, { force: true });
  }
  for (const v of victims) {
    opts.log?.warn({ model: v.model, version: v.version, instance: v.instance, pid: v.pid }, 'stopping a runtime left by a previous agent');
    killGroup(v.pid, 'SIGTERM');
  }
  const deadline = Date.now() + (opts.graceMs ?? 5000);
  while (victims.some((v) => alive(v.pid)) && Date.now() < deadline) await sleep(25);
  for (const v of victims) killGroup(v.pid, 'SIGKILL');
  return victims.map((v) => v.pid);
}
