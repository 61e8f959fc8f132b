import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { tailFile } from '../../agent/fetch/tail-file.js';
import { unpackArchive } from '../../agent/install/unpack.js';
import { rawTar } from '../helpers/archives.js';

// The overlapped unpack reads a download in flight through tailFile. Whenever it ends — its
// consumer stops, the download fails, or its signal aborts (the unpack refused the archive) — the
// file is closed then, not when the garbage collector finds the handle (DEP0137). The daemon-level
// case is in daemon-survives.test.ts.

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tail-file-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Descriptors of this process open on `file`. */
function openOn(file: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

describe('tailFile', () => {
  it('closes the file as soon as its signal aborts while it waits for bytes the download has not written', async () => {
    const partial = join(dir, 'partial');
    writeFileSync(partial, randomBytes(64 * 1024));
    const stop = new AbortController();
    const tail = tailFile(partial, new Promise<number>(() => {}), stop.signal);
    expect((await tail.next()).value.length).toBe(64 * 1024);
    const waiting = tail.next(); // polls for more: nothing comes
    expect(openOn(partial)).toBe(1);
    stop.abort(new Error('the unpack refused the archive'));
    await expect(waiting).rejects.toThrow();
    expect(openOn(partial)).toBe(0);
  });

  it('an unpack that refuses the archive ends the tail it reads, while the tail waits at a chunk it has read', async () => {
    const partial = join(dir, 'partial');
    // Ten 1 MiB chunks and a hostile first entry: the unpack stops after the first chunk, the tail is suspended at the next.
    const archive = gzipSync(rawTar([{ path: '../escape', body: 'x' }, ...Array.from({ length: 40 }, (_, i) => ({ path: `f${i}`, body: randomBytes(256 * 1024) }))]));
    writeFileSync(partial, archive);
    const unfinished = new Promise<number>(() => {}); // the download has not said it is done
    await expect(unpackArchive(tailFile(partial, unfinished), join(dir, 'staging', 'x'), { maxBytes: 1e9, maxEntries: 1000 })).rejects.toMatchObject({ code: 'UnsafeArchive' });
    expect(openOn(partial)).toBe(0);
  });

  it('closes the file when its consumer breaks off, and when the download fails', async () => {
    const partial = join(dir, 'partial');
    writeFileSync(partial, randomBytes(3 * 1024 * 1024));
    const never = new Promise<number>(() => {});
    for await (const chunk of tailFile(partial, never)) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    expect(openOn(partial)).toBe(0);

    let fail!: (e: Error) => void;
    const failing = new Promise<number>((_, r) => (fail = r));
    const it = tailFile(partial, failing);
    await it.next();
    fail(new Error('download failed'));
    await expect((async () => { for (;;) if ((await it.next()).done) break; })()).rejects.toThrow('download failed');
    expect(openOn(partial)).toBe(0);
  });
});
