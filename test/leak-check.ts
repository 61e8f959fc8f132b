import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { findProcesses, killHard, type ProcInfo } from './helpers/process-tree.js';

// The end-of-run check (vitest globalSetup): every process a test starts must have ended, with
// its whole tree, and every temp folder must be gone when the run ends.
//
// - Every process of the run inherits LEAK_CHECK_RUN=<id> (not MODELD_*: the CLI helper and the
//   agent's runtimes drop those) and TMPDIR=<a fresh folder>, so os.tmpdir(), mkdtemp and
//   python's tempfile all land in the run's own folder.
// - After the pool is closed (workers gone, their exit hooks run), any live process whose
//   environment carries the id, or whose command line names the run's folder, is an orphan;
//   anything left in the folder (or mounted under it) is a leftover. Each is printed, ended or
//   removed, and the run fails: an error from an onClose hook sets vitest's exit code to 1.

export const RUN_MARK = 'LEAK_CHECK_RUN';

/** How long processes ended in a test's last hook get to finish exiting. */
const EXIT_GRACE_MS = 5_000;

/**
 * Caches tools keep in the temp folder (tsx's transforms, node's compile cache, which tsc turns
 * on): links to the machine's own keep every child warm across runs; they are the run's own
 * entries, not leftovers.
 */
const CACHES = [`tsx-${process.getuid?.() ?? 0}`, 'node-compile-cache'];

function liveProcesses(id: string, runTmp: string): ProcInfo[] {
  const mark = `${RUN_MARK}=${id}`;
  return findProcesses((p, env) => env.includes(mark) || p.cmdline.includes(runTmp));
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && m.startsWith(`${dir}/`));
}

async function collectLeaks(id: string, runTmp: string): Promise<string[]> {
  const deadline = Date.now() + EXIT_GRACE_MS;
  let procs = liveProcesses(id, runTmp);
  while (procs.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    procs = liveProcesses(id, runTmp);
  }
  const leaks: string[] = [];
  for (const p of procs) {
    leaks.push(`orphan process pid ${p.pid} (ppid ${p.ppid}, pgid ${p.pgid}): ${p.cmdline}`);
    killHard(p);
  }
  for (const m of mountsUnder(runTmp).reverse()) {
    leaks.push(`leftover mount ${m}`);
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      /* reported; rm below may then fail too */
    }
  }
  let entries: string[] = [];
  try {
    entries = readdirSync(runTmp);
  } catch {
    /* removed by someone: nothing left */
  }
  for (const e of entries.filter((e) => !CACHES.includes(e))) leaks.push(`leftover temp ${join(runTmp, e)}`);
  rmSync(runTmp, { recursive: true, force: true });
  return leaks;
}

export default function setup(project: TestProject): void {
  const id = randomBytes(6).toString('hex');
  const runTmp = mkdtempSync(join(tmpdir(), 'modeld-test-'));
  for (const cache of CACHES) {
    mkdirSync(join(tmpdir(), cache), { recursive: true });
    symlinkSync(join(tmpdir(), cache), join(runTmp, cache));
  }
  // Set before the pool starts: forked workers, and everything they spawn, inherit both.
  process.env[RUN_MARK] = id;
  process.env.TMPDIR = runTmp;
  // onClose runs after the pool is closed (a globalSetup teardown runs before, with the workers
  // and their exit hooks still alive); vitest logs an error thrown here and exits with 1.
  project.vitest.onClose(async () => {
    const leaks = await collectLeaks(id, runTmp);
    if (leaks.length === 0) return;
    const report = `leak check: ${leaks.length} left behind by the run (now ended/removed):\n  ${leaks.join('\n  ')}`;
    throw new Error(report);
  });
}
