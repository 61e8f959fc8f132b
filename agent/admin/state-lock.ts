// One writer of the state directory at a time. The daemon holds this lock for its whole life;
// a CLI command that writes the store without a daemon (seed, apply, gc... when `modeld run` is
// not running) holds it for the command. Rule: daemon running -> the CLI goes through the admin
// API; daemon not running -> the CLI takes the lock; `modeld run` refuses to start while a CLI
// holds it, and the CLI refuses direct access while the daemon holds it.
//
// The lock file is created complete (written to a temp name, fsynced, then hard-linked to the
// lock name: link() fails with EEXIST atomically, like O_EXCL, and a reader never sees half a
// file). A lock whose pid is gone (or was reused by another process: the start time differs) is
// stale and broken under a short-lived mutex, so two starters cannot both break it and both win.
import { procStartTime } from '../runtime/pidfiles.js';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { sleep } from '../../shared/sleep.js';
import { ModeldError } from '../errors.js';

export interface LockOwner {
  pid: number;
  kind: 'daemon' | 'cli';
  /** What holds it, for the message a refused process prints ("modeld run", "modeld seed"). */
  command: string;
  /** Process start time from /proc/<pid>/stat (clock ticks since boot): detects a reused pid. */
  procStart?: string;
  since: number;
}

export interface StateLock {
  path: string;
  owner: LockOwner;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

/** A mutex left by a process that died while breaking a stale lock is itself stale after this. */
const BREAK_MUTEX_STALE_MS = 10_000;
const MAX_TRIES = 20;

/** Whether the process that wrote the lock still runs (same pid and, where known, same start time). */
export function isOwnerAlive(owner: LockOwner): boolean {
  if (!Number.isInteger(owner.pid) || owner.pid <= 0) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false; // ESRCH: gone
  }
  if (owner.procStart === undefined) return true;
  const now = procStartTime(owner.pid);
  return now === undefined || now === owner.procStart;
}

function readRaw(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function parseOwner(raw: string): LockOwner | undefined {
  try {
    const o = JSON.parse(raw) as LockOwner;
    return typeof o?.pid === 'number' && (o.kind === 'daemon' || o.kind === 'cli') ? o : undefined;
  } catch {
    return undefined;
  }
}

/** The live holder of the lock, or undefined when it is free or stale. */
export function lockHolder(path: string): LockOwner | undefined {
  const raw = readRaw(path);
  const owner = raw === undefined ? undefined : parseOwner(raw);
  return owner && isOwnerAlive(owner) ? owner : undefined;
}

export function describeOwner(o: LockOwner): string {
  return `${o.command} (pid ${o.pid})`;
}

/** Creates `path` with `content`, or returns false if it exists. */
function createExclusive(path: string, content: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * Removes the lock if it still holds exactly `staleRaw` (what the caller judged stale): never a
 * lock another process has taken meanwhile. Serialized by a mutex file; returns whether it ran.
 * Exported for tests.
 */
export function breakStale(path: string, staleRaw: string): boolean {
  const mutex = `${path}.break`;
  if (!createExclusive(mutex, String(process.pid))) {
    const age = Date.now() - (statSafe(mutex)?.mtimeMs ?? Date.now());
    if (age > BREAK_MUTEX_STALE_MS) unlinkSafe(mutex);
    return false; // someone else is breaking it: try again
  }
  try {
    if (readRaw(path) === staleRaw) unlinkSafe(path);
    return true;
  } finally {
    unlinkSafe(mutex);
  }
}

/** Start-up only: a short blocking pause between attempts. */
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const statSafe = (p: string) => {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
};
const unlinkSafe = (p: string) => {
  try {
    unlinkSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
};

/**
 * Takes the state directory's lock or throws ModeldError('StateLocked') naming the live holder
 * (details.owner). The directory must exist.
 */
export function acquireStateLock(path: string, who: { kind: LockOwner['kind']; command: string }): StateLock {
  const owner: LockOwner = { pid: process.pid, kind: who.kind, command: who.command, procStart: procStartTime(process.pid), since: Date.now() };
  const content = JSON.stringify(owner) + '\n';
  for (let i = 0; i < MAX_TRIES; i++) {
    if (createExclusive(path, content)) {
      let released = false;
      return {
        path,
        owner,
        release() {
          if (released) return;
          released = true;
          if (readRaw(path) === content) unlinkSafe(path);
        },
      };
    }
    const raw = readRaw(path);
    if (raw === undefined) continue; // released meanwhile
    const holder = parseOwner(raw);
    if (holder && isOwnerAlive(holder)) {
      throw new ModeldError('StateLocked', `the state directory is in use by ${describeOwner(holder)} (lock ${path})`, { details: { owner: holder } });
    }
    breakStale(path, raw);
    sleepSync(20 * (i + 1)); // a contender may be mid-break or mid-release
  }
  throw new ModeldError('StateLocked', `could not take the lock ${path} (contended)`);
}

/**
 * acquireStateLock, waiting up to `waitMs` while a CLI command holds the lock (its commands are
 * short; a daemon starting during `modeld apply` should not fail for it). A daemon holder, or a
 * CLI holder still there after the wait, is StateLocked.
 */
export async function acquireStateLockWaiting(
  path: string,
  who: { kind: LockOwner['kind']; command: string },
  opts: { waitMs: number; signal?: AbortSignal },
): Promise<StateLock> {
  const deadline = Date.now() + opts.waitMs;
  for (;;) {
    try {
      return acquireStateLock(path, who);
    } catch (err) {
      const owner = err instanceof ModeldError ? (err.details.owner as LockOwner | undefined) : undefined;
      if (owner?.kind !== 'cli' || Date.now() >= deadline) throw err;
    }
    await sleep(200, opts.signal);
    opts.signal?.throwIfAborted();
  }
}
