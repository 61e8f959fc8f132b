import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ModeldError } from '../errors.js';

/**
 * An in-flight download on disk with the sha256 of exactly the bytes it holds. Opening an
 * existing file keeps at most `keepBytes` and re-hashes them from disk, so a download resumed
 * after a restart ends with the same digest as one that never stopped.
 */
export class PartialFile {
  private hash: Hash;
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private bytes: number,
    hash: Hash,
  ) {
    this.hash = hash;
  }

  /** Opens (creating if needed) and keeps min(keepBytes, current length) bytes. */
  static async open(path: string, keepBytes: number, signal?: AbortSignal): Promise<PartialFile> {
    // Not 'a+': in append mode positioned writes would ignore their position.
    const fh = await open(path, 'r+').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return open(path, 'w+', 0o600);
      throw err;
    });
    try {
      const { size } = await fh.stat();
      const keep = Math.max(0, Math.min(keepBytes, size));
      if (size !== keep) await fh.truncate(keep);
      const hash = createHash('sha256');
      if (keep > 0) await hashRange(path, keep, hash, signal);
      return new PartialFile(path, fh, keep, hash);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  get size(): number {
    return this.bytes;
  }

  /** Appends a chunk; on ENOSPC the file is cut back to the last whole chunk and NoSpace thrown. */
  async write(chunk: Uint8Array): Promise<void> {
    let off = 0;
    try {
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.bytes + off);
        off += bytesWritten;
      }
    } catch (err) {
      await this.fh.truncate(this.bytes).catch(() => {});
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOSPC' || e.code === 'EDQUOT') {
        throw new ModeldError('NoSpace', `disk full while writing ${this.path} at byte ${this.bytes}`, { cause: err, retryable: true });
      }
      throw new ModeldError('Internal', `write to ${this.path} failed: ${e.code ?? e.message}`, { cause: err });
    }
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  /** Empties the file to start over. */
  async reset(): Promise<void> {
    await this.fh.truncate(0);
    await this.fh.sync();
    this.hash = createHash('sha256');
    this.bytes = 0;
  }

  /** Flush the data to disk: only synced bytes are recorded as done. */
  async sync(): Promise<void> {
    await this.fh.datasync();
  }

  /** Hex digest of the bytes written so far (the hash keeps going). */
  digest(): string {
    return this.hash.copy().digest('hex');
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function hashRange(path: string, bytes: number, hash: Hash, signal?: AbortSignal): Promise<void> {
  const stream = createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024, signal });
  for await (const chunk of stream) hash.update(chunk as Buffer);
}
