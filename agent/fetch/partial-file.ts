import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ModeldError } from '../errors.js';

const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * An in-flight download on disk with the sha256 of exactly the bytes it holds. Opening an
 * existing file keeps at most `keepBytes` and re-hashes them from disk, so a download resumed
 * after a restart ends with the same digest as one that never stopped.
 */
export class PartialFile {
  private hash: Hash;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Set when a write failed: the hash no longer matches the file. */
  private broken: ModeldError | undefined;
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

  /**
   * Appends a chunk. Chunks are gathered and written ~1 MiB at a time (fewer syscalls and
   * thread-pool round trips); sync() writes out what is pending. On ENOSPC the file is cut back
   * to the last whole write and NoSpace thrown; the in-memory hash is then unusable, so this
   * object refuses further work (reopen to resume: that re-hashes from disk).
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.broken) throw this.broken;
    this.hash.update(chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.bytes += chunk.length;
    if (this.pendingBytes >= WRITE_BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return; // after a failed write nothing is pending: sync() still works
    if (this.broken) throw this.broken;
    let buffers = this.pending;
    let position = this.bytes - this.pendingBytes;
    const end = this.bytes;
    try {
      while (position < end) {
        const { bytesWritten } = await this.fh.writev(buffers, position);
        position += bytesWritten;
        buffers = dropPrefix(buffers, bytesWritten);
      }
    } catch (err) {
      const flushed = this.bytes - this.pendingBytes;
      await this.fh.truncate(flushed).catch(() => {});
      this.bytes = flushed;
      this.pending = [];
      this.pendingBytes = 0;
      const e = err as NodeJS.ErrnoException;
      this.broken =
        e.code === 'ENOSPC' || e.code === 'EDQUOT'
          ? new ModeldError('NoSpace', `disk full while writing ${this.path} at byte ${flushed}`, { cause: err, retryable: true })
          : new ModeldError('Internal', `write to ${this.path} failed: ${e.code ?? e.message}`, { cause: err });
      throw this.broken;
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Empties the file to start over. */
  async reset(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    this.broken = undefined;
    await this.fh.truncate(0);
    await this.fh.sync();
    this.hash = createHash('sha256');
    this.bytes = 0;
  }

  /** Flush the data to disk: only synced bytes are recorded as done. */
  async sync(): Promise<void> {
    await this.flush();
    await this.fh.datasync();
  }

  /** Hex digest of the bytes written so far (the hash keeps going). */
  digest(): string {
    if (this.broken) throw this.broken;
    return this.hash.copy().digest('hex');
  }

  /** Writes out what is pending (best effort) and closes. */
  async close(): Promise<void> {
    await this.flush().catch(() => {});
    await this.fh.close();
  }
}

function dropPrefix(buffers: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of buffers) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

async function hashRange(path: string, bytes: number, hash: Hash, signal?: AbortSignal): Promise<void> {
  const stream = createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024, signal });
  for await (const chunk of stream) hash.update(chunk as Buffer);
}
