// Creates one archive entry under the unpack root after checking it against what exists so far.
// Every refusal is an UnsafeArchive naming the entry; nothing is created outside the root because
// names are checked as components, parents must be directories this unpack created (never links),
// and files are opened with O_EXCL|O_NOFOLLOW.
import { untilAborted } from '../until-aborted.js';
import { constants } from 'node:fs';
import { link, mkdir, open, symlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReadEntry } from 'tar';
import { ModeldError } from '../errors.js';
import { entryParts, linkTargetInside, newTreeIndex, type TreeIndex } from './entry-path.js';
import { COMPLETE_MARKER } from './marker.js';

export const unsafe = (path: string, reason: string): ModeldError =>
  new ModeldError('UnsafeArchive', `unsafe archive entry '${path}': ${reason}`, { details: { entry: path, reason } });

/** Entry types written; everything else (devices, FIFOs, sparse, contiguous, vendor types) refuses the archive. */
const FILE_TYPES = new Set(['File', 'OldFile']);
const ALLOWED_TYPES = new Set(['File', 'OldFile', 'Directory', 'SymbolicLink', 'Link']);

/** Without setuid/setgid/sticky and world-write; the owner can always write (until promotion). */
const fileMode = (m: number | undefined) => ((m ?? 0o644) & 0o775) | 0o600;
const dirMode = (m: number | undefined) => ((m ?? 0o755) & 0o775) | 0o700;

/** Checks that need only the entry header; run as soon as the parser announces it. */
export function checkHeader(entry: Pick<ReadEntry, 'path' | 'type'>): string[] {
  if (!ALLOWED_TYPES.has(entry.type)) throw unsafe(entry.path, `entry type ${entry.type} is not allowed`);
  const checked = entryParts(entry.path);
  if (!checked.ok) throw unsafe(entry.path, checked.reason);
  if (checked.parts[0] === COMPLETE_MARKER && checked.parts.length === 1) throw unsafe(entry.path, 'reserved name');
  if (checked.parts.length === 0 && entry.type !== 'Directory') throw unsafe(entry.path, 'empty name');
  return checked.parts;
}

export const isFileEntry = (type: string): boolean => FILE_TYPES.has(type);

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
}

export class EntryWriter {
  readonly index: TreeIndex = newTreeIndex();
  files = 0;
  bytes = 0;

  /** `stopped` aborts when the unpack fails: a body that will never finish must not hold the writer. */
  constructor(
    private readonly root: string,
    private readonly stopped: AbortSignal,
  ) {}

  private abs(parts: string[]): string {
    return join(this.root, ...parts);
  }

  /** Parents must be directories this unpack made; missing ones are created. */
  private async parents(path: string, parts: string[]): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const key = parts.slice(0, i).join('/');
      const kind = this.index.kinds.get(key);
      if (kind === 'dir') continue;
      if (kind) throw unsafe(path, `passes through ${kind === 'symlink' ? 'a symlink' : 'a file'} '${key}'`);
      await mkdir(this.abs(parts.slice(0, i)), 0o755);
      this.index.kinds.set(key, 'dir');
    }
  }

  private fresh(path: string, key: string): void {
    if (this.index.kinds.has(key)) throw unsafe(path, 'duplicate entry');
  }

  /** Create the entry; for files, consume its body. Call only after checkHeader. */
  async write(entry: ReadEntry, parts: string[]): Promise<void> {
    const path = entry.path;
    const key = parts.join('/');
    if (parts.length === 0) {
      entry.resume(); // './' is the root itself
      return;
    }
    await this.parents(path, parts);
    switch (entry.type) {
      case 'Directory': {
        const kind = this.index.kinds.get(key);
        if (kind && kind !== 'dir') throw unsafe(path, 'duplicate entry');
        if (!kind) await mkdir(this.abs(parts), dirMode(entry.mode));
        this.index.kinds.set(key, 'dir');
        entry.resume();
        return;
      }
      case 'SymbolicLink': {
        this.fresh(path, key);
        const target = entry.linkpath ?? '';
        const inside = linkTargetInside(this.index, parts, target);
        if (!inside.ok) throw unsafe(path, inside.reason);
        await symlink(target, this.abs(parts));
        this.index.kinds.set(key, 'symlink');
        this.index.links.set(key, target);
        entry.resume();
        return;
      }
      case 'Link': {
        this.fresh(path, key);
        const target = entryParts(entry.linkpath ?? '');
        if (!target.ok) throw unsafe(path, `hard link target '${entry.linkpath}': ${target.reason}`);
        const targetKind = this.index.kinds.get(target.parts.join('/'));
        if (targetKind !== 'file') {
          throw unsafe(path, `hard link to '${entry.linkpath}', which is ${targetKind ? `a ${targetKind}` : 'not an already extracted file'}`);
        }
        await link(this.abs(target.parts), this.abs(parts));
        this.index.kinds.set(key, 'file');
        this.files++;
        entry.resume();
        return;
      }
      default: {
        this.fresh(path, key);
        const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
        const fh = await open(this.abs(parts), flags, fileMode(entry.mode));
        this.index.kinds.set(key, 'file');
        try {
          // Not `for await`: a Minipass iterator asked for more after a destroy waits forever.
          const body = entry[Symbol.asyncIterator]();
          for (;;) {
            const next = await untilAborted(body.next(), this.stopped);
            if (next.done) break;
            await writeAll(fh, next.value);
            this.bytes += next.value.length;
          }
        } finally {
          await fh.close();
        }
        this.files++;
      }
    }
  }

  /** Links checked when created may be re-pointed by later links ('x' -> 'y/..' then 'y' -> '.'): check all again. */
  checkAllLinks(): void {
    for (const [key, target] of this.index.links) {
      const inside = linkTargetInside(this.index, key.split('/'), target);
      if (!inside.ok) throw unsafe(key, inside.reason);
    }
  }
}
