import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireStateLock, breakStale, lockHolder } from '../../agent/admin/state-lock.js';
import { procStartTime } from '../../agent/runtime/pidfiles.js';
import { spawnTree } from '../helpers/process-tree.js';
import { waitFor } from '../helpers/wait.js';

// The state directory's lock: one writer at a time, stale locks (dead pid, reused pid, garbage)
// taken over, and among processes racing for a stale lock exactly one wins.

const LOCK_MODULE = resolve(import.meta.dirname, '../../agent/admin/state-lock.ts');
let dir: string;
let lockFile: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'modeld-lock-'));
  lockFile = join(dir, 'modeld.lock');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A pid that certainly does not run any more. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

describe('state lock', () => {
  it('is exclusive while held, names its holder, and is free again after release', () => {
    const lock = acquireStateLock(lockFile, { kind: 'daemon', command: 'modeld run' });
    expect(lockHolder(lockFile)).toMatchObject({ pid: process.pid, kind: 'daemon', command: 'modeld run' });
    expect(() => acquireStateLock(lockFile, { kind: 'cli', command: 'modeld seed' })).toThrow(
      expect.objectContaining({ code: 'StateLocked', message: expect.stringContaining(`modeld run (pid ${process.pid})`) }),
    );
    lock.release();
    expect(existsSync(lockFile)).toBe(false);
    acquireStateLock(lockFile, { kind: 'cli', command: 'modeld seed' }).release();
  });

  it('release never removes a lock that is no longer ours', () => {
    const lock = acquireStateLock(lockFile, { kind: 'cli', command: 'a' });
    const other = JSON.stringify({ pid: process.pid, kind: 'cli', command: 'b', since: 1 });
    writeFileSync(lockFile, other);
    lock.release();
    expect(readFileSync(lockFile, 'utf8')).toBe(other);
  });

  it('takes over a lock whose process is gone', () => {
    writeFileSync(lockFile, JSON.stringify({ pid: deadPid(), kind: 'daemon', command: 'modeld run', since: 1 }));
    expect(lockHolder(lockFile)).toBeUndefined();
    const lock = acquireStateLock(lockFile, { kind: 'cli', command: 'modeld apply' });
    expect(JSON.parse(readFileSync(lockFile, 'utf8'))).toMatchObject({ pid: process.pid, command: 'modeld apply' });
    lock.release();
  });

  it('takes over a lock whose pid now belongs to another process (start time differs)', () => {
    expect(procStartTime(process.pid)).toMatch(/^\d+$/);
    writeFileSync(lockFile, JSON.stringify({ pid: process.pid, kind: 'daemon', command: 'modeld run', procStart: '1', since: 1 }));
    expect(lockHolder(lockFile)).toBeUndefined();
    acquireStateLock(lockFile, { kind: 'daemon', command: 'modeld run' }).release();
  });

  it('takes over a lock file with garbage in it', () => {
    writeFileSync(lockFile, 'not json');
    acquireStateLock(lockFile, { kind: 'cli', command: 'modeld gc' }).release();
  });

  it('breaking a stale lock never removes a lock taken since, nor runs while another breaker holds the mutex', () => {
    const stale = JSON.stringify({ pid: deadPid(), kind: 'daemon', command: 'modeld run', since: 1 });
    // Seen stale, but another process has replaced it by the time we break it: left alone.
    const lock = acquireStateLock(lockFile, { kind: 'cli', command: 'winner' });
    expect(breakStale(lockFile, stale)).toBe(true);
    expect(lockHolder(lockFile)).toMatchObject({ command: 'winner' });
    lock.release();
    // Another breaker at work (fresh mutex): we do nothing and retry later.
    writeFileSync(lockFile, stale);
    writeFileSync(`${lockFile}.break`, '1');
    expect(breakStale(lockFile, stale)).toBe(false);
    expect(readFileSync(lockFile, 'utf8')).toBe(stale);
    // Its mutex is removed once old enough, and the next try breaks the lock.
    utimesSync(`${lockFile}.break`, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    expect(breakStale(lockFile, stale)).toBe(false);
    expect(breakStale(lockFile, stale)).toBe(true);
    expect(existsSync(lockFile)).toBe(false);
  });

  it('among processes racing for a stale lock, exactly one wins', async () => {
    writeFileSync(lockFile, JSON.stringify({ pid: deadPid(), kind: 'daemon', command: 'modeld run', since: 1 }));
    const release = join(dir, 'release');
    // Each contender tries once; a winner holds the lock until the test has heard from everyone.
    const script = `
      const { acquireStateLock } = await import(${JSON.stringify(LOCK_MODULE)});
      const { existsSync } = await import('node:fs');
      try {
        const lock = acquireStateLock(${JSON.stringify(lockFile)}, { kind: 'cli', command: 'contender' });
        console.log('won');
        while (!existsSync(${JSON.stringify(release)})) await new Promise((r) => setTimeout(r, 20));
        lock.release();
      } catch (err) {
        console.log(err.code);
      }`;
    const n = 6;
    const outputs: string[] = new Array(n).fill('');
    const exits = Array.from({ length: n }, (_, i) => {
      const contender = spawnTree(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      contender.child.stdout!.on('data', (c: Buffer) => (outputs[i] += c.toString()));
      return contender.exited;
    });
    try {
      await waitFor(() => outputs.every((o) => o.trim() !== ''), 60_000, 'every contender to report');
      expect(outputs.map((o) => o.trim()).sort()).toEqual(['StateLocked', 'StateLocked', 'StateLocked', 'StateLocked', 'StateLocked', 'won']);
    } finally {
      writeFileSync(release, '');
      await Promise.all(exits);
    }
    expect(existsSync(lockFile)).toBe(false);
  });
});
