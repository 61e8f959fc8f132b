import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, stat, unlink } from 'node:fs/promises';
import { createReadStream, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { BlobRecord, BlobTable } from '../store/blobs.js';
import { fsyncPath, mkdirDurable, renameDurable } from '../durable.js';
import { PartialFile } from './partial-file.js';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Lower-case hex sha256, or InvalidSpec. */
export function normalizeSha256(sha256: string): string {
  const s = String(sha256).trim().toLowerCase();
  if (!SHA256_HEX.test(s)) throw new ModeldError('InvalidSpec', `"${String(sha256).slice(0, 80)}" is not a sha256 digest (64 hex characters)`);
  return s;
}

export function digestMismatch(expected: string, actual: string, source: string): ModeldError {
  return new ModeldError('DigestMismatch', `sha256 mismatch for ${source}: expected ${expected}, got ${actual}`, {
    details: { expected, actual, source },
  });
}

/**
 * Verified archives, content-addressed at blobs/sha256/<ab>/<rest>. A blob is only ever added
 * by renaming a fully written, fsynced, verified file into place, so a name in the store always
 * means complete, checked bytes.
 */
export class BlobStore {
  private readonly paths: StatePaths;
  private readonly blobs: BlobTable;
  private readonly log: Logger;
  /** One fetch per digest at a time in this process: two fetches of the same blob do not share a partial file. */
  readonly locks = new KeyedMutex();

  constructor(deps: { paths: StatePaths; blobs: BlobTable; log: Logger }) {
    this.paths = deps.paths;
    this.blobs = deps.blobs;
    this.log = deps.log;
  }

  /** True when the database records the blob AND its file is there with the recorded size. */
  has(sha256: string): boolean {
    const rec = this.blobs.get(sha256);
    if (!rec) return false;
    try {
      const st = statSync(this.pathOf(rec.sha256));
      return st.isFile() && st.size === rec.size;
    } catch {
      return false;
    }
  }

  /** The database record, whether or not the file is still there (see has()). */
  record(sha256: string): BlobRecord | undefined {
    return this.blobs.get(sha256);
  }

  pathOf(sha256: string): string {
    return this.paths.blob(sha256.toLowerCase());
  }

  /** Mark a blob as just used (gc keeps recently used blobs longer). */
  touch(sha256: string): void {
    this.blobs.touch(sha256);
  }

  /**
   * Moves a verified temp file (on the same filesystem) into the store: fsync, read-only,
   * rename, fsync the directory, then record it. Returns the final path.
   */
  async adopt(tmpFile: string, sha256: string, size: number, source: string): Promise<string> {
    const sha = normalizeSha256(sha256);
    const dest = this.pathOf(sha);
    const st = await stat(tmpFile);
    if (st.size !== size) throw new ModeldError('SizeMismatch', `refusing to adopt ${tmpFile}: ${st.size} bytes, expected ${size}`);
    await fsyncPath(tmpFile);
    await chmod(tmpFile, 0o444);
    await mkdirDurable(dirname(dest));
    await renameDurable(tmpFile, dest);
    this.blobs.put({ sha256: sha, size, source });
    this.log.info({ sha256: sha, size, source }, 'blob stored');
    return dest;
  }

  /**
   * Copies a local file into the store (offline pre-seeding), hashing while copying. With
   * expectedSha256 a mismatch throws DigestMismatch and leaves nothing behind.
   */
  async importFile(
    src: string,
    opts: { expectedSha256?: string; onProgress?: (bytes: number, total: number) => void; signal?: AbortSignal } = {},
  ): Promise<{ sha256: string; size: number; path: string; alreadyPresent: boolean }> {
    const expected = opts.expectedSha256 === undefined ? undefined : normalizeSha256(opts.expectedSha256);
    if (expected && this.has(expected)) {
      this.blobs.touch(expected);
      return { sha256: expected, size: this.blobs.get(expected)!.size, path: this.pathOf(expected), alreadyPresent: true };
    }
    const srcStat = await stat(src).catch((err: NodeJS.ErrnoException) => {
      throw new ModeldError('DownloadFailed', `cannot read ${src}: ${err.code ?? err.message}`, { cause: err });
    });
    if (!srcStat.isFile()) throw new ModeldError('DownloadFailed', `${src} is not a regular file`);
    await mkdir(this.paths.partialDir, { recursive: true });
    const tmp = this.paths.partial(`import-${randomBytes(8).toString('hex')}`);
    const file = await PartialFile.open(tmp, 0);
    let adopted = false;
    try {
      const stream = createReadStream(src, { highWaterMark: 1024 * 1024, signal: opts.signal });
      try {
        for await (const chunk of stream) {
          await file.write(chunk as Buffer);
          opts.onProgress?.(file.size, srcStat.size);
        }
      } catch (err) {
        if (opts.signal?.aborted) throw new ModeldError('Cancelled', `import of ${src} cancelled`, { cause: err });
        throw err;
      }
      const actual = file.digest();
      if (expected && actual !== expected) throw digestMismatch(expected, actual, src);
      await file.sync();
      await file.close();
      const size = file.size;
      if (this.has(actual)) {
        this.blobs.touch(actual);
        return { sha256: actual, size, path: this.pathOf(actual), alreadyPresent: true };
      }
      // No lock here: renaming identical verified content over itself is harmless.
      const path = await this.adopt(tmp, actual, size, `seed:${src}`);
      adopted = true;
      return { sha256: actual, size, path, alreadyPresent: false };
    } finally {
      await file.close().catch(() => {});
      if (!adopted) await unlink(tmp).catch(() => {});
    }
  }

  /**
   * A file at the blob's place with no record (a crash between rename and record): hash it,
   * record it when it matches, delete it when not. True when the blob is now in the store.
   */
  async recoverUnrecorded(sha256: string, signal?: AbortSignal): Promise<boolean> {
    const sha = normalizeSha256(sha256);
    if (this.blobs.get(sha)) return this.has(sha);
    const path = this.pathOf(sha);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return false;
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024, signal })) hash.update(chunk as Buffer);
    if (hash.digest('hex') !== sha) {
      this.log.warn({ sha256: sha, path }, 'unrecorded blob file does not match its name: deleted');
      await unlink(path).catch(() => {});
      return false;
    }
    this.blobs.put({ sha256: sha, size: st.size, source: 'recovered' });
    this.log.info({ sha256: sha, size: st.size }, 'recorded a verified blob file found without a record');
    return true;
  }

  /** Forgets a blob and deletes its file. */
  async remove(sha256: string): Promise<void> {
    const sha = sha256.toLowerCase();
    this.blobs.delete(sha);
    const path = this.pathOf(sha);
    try {
      await unlink(path);
      await fsyncPath(dirname(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  list(): BlobRecord[] {
    return this.blobs.list();
  }
}
