import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

// A child process as a test peer, with its whole tree. The child leads its own process group,
// and it and everything it starts carry LEAK_CHECK_TREE=<id> in their environment: also the
// runtimes an agent starts detached in groups of their own, and after the child was killed with
// -9 (its pid files may then name nothing any more). end() kills every process carrying the id
// and returns once none is left. /proc is the only source: the suite runs on Linux.

export const TREE_MARK = 'LEAK_CHECK_TREE';

export interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  cmdline: string;
}

/** A live process (not a zombie) readable by us, with its environment. */
export function readProc(pid: number): { info: ProcInfo; environ: string[] } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined; // exited; its parent reaps it
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    return { info: { pid, ppid: Number(fields[1]), pgid: Number(fields[2]), cmdline }, environ };
  } catch {
    return undefined; // gone, or not ours to read
  }
}

/** Live processes (other than this one) for which `match` holds. */
export function findProcesses(match: (p: ProcInfo, environ: string[]) => boolean): ProcInfo[] {
  const found: ProcInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const p = readProc(pid);
    if (p && match(p.info, p.environ)) found.push(p.info);
  }
  return found;
}

/** SIGKILL to `p`, and to its group when it leads one that is not ours. */
export function killHard(p: ProcInfo): void {
  const ownGroup = readProc(process.pid)?.info.pgid;
  try {
    process.kill(p.pgid === p.pid && p.pgid !== ownGroup ? -p.pid : p.pid, 'SIGKILL');
  } catch {
    /* gone meanwhile */
  }
}

/** Kills every process whose environment holds `TREE_MARK=id`, until none is left; returns those it found first. */
async function killTree(id: string, what: string, timeoutMs = 15_000): Promise<ProcInfo[]> {
  const mark = `${TREE_MARK}=${id}`;
  const deadline = Date.now() + timeoutMs;
  let first: ProcInfo[] | undefined;
  for (;;) {
    const left = findProcesses((_, env) => env.includes(mark));
    first ??= left;
    if (left.length === 0) return first;
    for (const p of left) killHard(p);
    if (Date.now() > deadline) throw new Error(`${what}: still running after SIGKILL: ${left.map((p) => `${p.pid} ${p.cmdline}`).join('; ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A fresh tree id and the environment that carries it. */
function treeEnv(env: NodeJS.ProcessEnv = process.env): { id: string; env: NodeJS.ProcessEnv } {
  const id = randomBytes(6).toString('hex');
  return { id, env: { ...env, [TREE_MARK]: id } };
}

export interface ProcessTree {
  child: ChildProcess;
  /** Exit code and signal of the child itself, once its output has all been read. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the child and every process of its tree (SIGKILL); resolves when all are gone. */
  end(): Promise<void>;
  /** A graceful stop: `signal` to the child, up to `graceMs` for it to exit, then end(). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Trees started and not ended yet, each with its end that tells what was still running. */
const live = new Map<ProcessTree, () => Promise<ProcInfo[]>>();

/** spawn(), with the child leading its own process group and its tree marked (see above). */
export function spawnTree(cmd: string, args: string[], opts: SpawnOptions = {}): ProcessTree {
  const { id, env } = treeEnv(opts.env ?? process.env);
  const child = spawn(cmd, args, { ...opts, env, detached: true });
  let reaped = false;
  child.once('exit', () => (reaped = true));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'close': the child exited and its stdio is drained, so what it wrote has all been read.
    child.once('close', (code, signal) => resolve({ code, signal }));
    // Never started (ENOENT and the like): nothing to end.
    child.once('error', () => {
      if (child.pid === undefined) {
        reaped = true;
        resolve({ code: null, signal: null });
      }
    });
  });
  const finish = async (): Promise<ProcInfo[]> => {
    const running = !reaped && child.pid ? readProc(child.pid)?.info : undefined;
    // The whole group first, while its leader is unreaped (its pid cannot have been reused).
    if (!reaped && child.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    const what = `${cmd} ${args.join(' ')}`.slice(0, 200);
    const others = await killTree(id, what);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      exited,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: killed but never reaped`)), 15_000))),
    ]).finally(() => clearTimeout(timer));
    live.delete(tree);
    return running ? [running, ...others.filter((p) => p.pid !== running.pid)] : others;
  };
  const tree: ProcessTree = {
    child,
    exited,
    async end() {
      await finish();
    },
    async stop(signal = 'SIGTERM', graceMs = 20_000) {
      if (!reaped) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]).finally(() => clearTimeout(timer));
      await tree.end();
    },
  };
  live.set(tree, finish);
  return tree;
}

/**
 * Ends every tree this test process started and did not end (the per-file safety net);
 * returns the processes that were still running.
 */
export async function endAllTrees(): Promise<ProcInfo[]> {
  return (await Promise.all([...live.values()].map((finish) => finish()))).flat();
}
