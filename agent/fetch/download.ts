import { createHash } from 'node:crypto';
import { mkdir, unlink } from 'node:fs/promises';
import type { Dispatcher } from 'undici';
import { sleep } from '../../shared/sleep.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { DownloadTable } from '../store/downloads.js';
import { retryWait } from './backoff.js';
import { digestMismatch, normalizeSha256, type BlobStore } from './blob-store.js';
import { ensureFreeSpace } from './disk-space.js';
import { ifRangeValue, RestartFromZero, runAttempt, type RemoteValidators } from './http-attempt.js';
import { PartialFile } from './partial-file.js';
import type { FetchPolicy } from './policy.js';
import { copyLocalFile } from './local-file.js';
import { progressEmitter } from './progress.js';
import { Throttle } from './throttle.js';
import { downloadDispatcher } from './dispatcher.js';
import { viaMirror } from './mirrors.js';
import { checkUrl } from './url-policy.js';

export interface FetchRequest {
  url: string;
  /** Hex, any case; undefined only when policy.allowUnverified. */
  sha256?: string;
}

export interface FetchResult {
  sha256: string;
  size: number;
  /** The blob in the store. */
  path: string;
  /** Bytes received over the network (or copied) by this call. */
  fetchedBytes: number;
  /** Bytes already on disk when this call started. */
  resumedFrom: number;
  fromStore: boolean;
}

export interface FetchDeps {
  paths: StatePaths;
  blobStore: BlobStore;
  downloads: DownloadTable;
  policy: FetchPolicy;
  log: Logger;
  /** The wait between attempts (tests record it); default the shared sleep. May resolve or reject on abort. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Shared when several downloads must share one bandwidth cap; default: one per call from policy.bandwidth. */
  throttle?: Throttle;
  /** Default: a fresh undici Agent per call with the policy's connect timeout. */
  dispatcher?: Dispatcher;
}

export interface FetchOptions {
  signal?: AbortSignal;
  onProgress?: (p: { bytes: number; totalBytes?: number }) => void;
  /** Every chunk received over the network, as it arrives (metrics). */
  onBytes?: (bytes: number) => void;
}

/** Restarts from zero allowed in one call (server changed the object, ignored If-Range...). */
const MAX_RESTARTS = 3;
/** Record progress (after fdatasync) at least this often, so a restart re-fetches little. */
const CHECKPOINT_MS = 1000;
const CHECKPOINT_MIN_BYTES = 64 * 1024;
const CHECKPOINT_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Gets the blob with this digest into the store: from the store if already there, else by a
 * resumable, verified download. Throws ModeldError (codes in agent/errors.ts) with url and
 * attempts in details.
 */
export async function fetchBlob(req: FetchRequest, deps: FetchDeps, opts: FetchOptions = {}): Promise<FetchResult> {
  const { policy, blobStore } = deps;
  const url = checkUrl(req.url, policy);
  const expected = req.sha256 === undefined || req.sha256 === '' ? undefined : normalizeSha256(req.sha256);
  if (!expected && !policy.allowUnverified) {
    throw new ModeldError('MissingDigest', `no sha256sum for ${req.url} and unverified downloads are not allowed`, { details: { url: req.url } });
  }
  const fromStore = (): FetchResult | undefined => {
    if (!expected || !blobStore.has(expected)) return undefined;
    blobStore.touch(expected);
    const path = blobStore.pathOf(expected);
    return { sha256: expected, size: blobStore.record(expected)!.size, path, fetchedBytes: 0, resumedFrom: 0, fromStore: true };
  };
  const stored = fromStore();
  if (stored) return stored;

  const key = expected ?? `url-${createHash('sha256').update(url.href).digest('hex')}`;
  let release: () => void;
  try {
    release = await blobStore.locks.acquire(key, opts.signal);
  } catch (err) {
    throw new ModeldError('Cancelled', 'cancelled while waiting for another download of the same blob', { cause: err });
  }
  try {
    // Someone else may have finished it while we waited.
    const now = fromStore();
    if (now) return now;
    if (expected && (await blobStore.recoverUnrecorded(expected, opts.signal))) return fromStore()!;
    if (url.protocol === 'file:') return await copyLocalFile(url, expected, deps, opts);
    const mirrored = viaMirror(url, policy.mirrors);
    if (mirrored) deps.log.info({ url: req.url, mirror: mirrored.href }, 'downloading from the site mirror');
    return await new Download(mirrored ?? url, req.url, key, expected, deps, opts).run();
  } finally {
    release();
  }
}

/** One call's download of one blob over HTTP(S). */
class Download {
  private file!: PartialFile;
  private known: RemoteValidators = {};
  private attempts = 0;
  private fetched = 0;
  private lastCheckpoint = { at: 0, bytes: 0 };
  private readonly progress: ReturnType<typeof progressEmitter>;
  private readonly log: Logger;

  constructor(
    private readonly url: URL,
    private readonly rawUrl: string,
    private readonly key: string,
    private readonly expected: string | undefined,
    private readonly deps: FetchDeps,
    private readonly opts: FetchOptions,
  ) {
    this.progress = progressEmitter(deps.policy.progressIntervalMs, opts.onProgress);
    this.log = deps.log.child({ url: url.href, key });
  }

  async run(): Promise<FetchResult> {
    const { paths, downloads, policy } = this.deps;
    await mkdir(paths.partialDir, { recursive: true });

    // Resume state from an earlier call or process. The row's bytesDone is only ever written
    // after an fdatasync, so bytes past it may be garbage after a power cut: cut them off.
    const row = downloads.get(this.key);
    const canResume = !!row && row.url === this.url.href && (!!this.expected || !!ifRangeValue(row));
    if (canResume) this.known = { etag: row.etag, lastModified: row.lastModified, totalBytes: row.totalBytes };
    this.attempts = row?.attempts ?? 0;
    this.file = await PartialFile.open(paths.partial(this.key), canResume ? row.bytesDone : 0, this.opts.signal).catch((err: unknown) => {
      if (this.opts.signal?.aborted) throw new ModeldError('Cancelled', 'download cancelled', { cause: err, details: { url: this.rawUrl } });
      throw err;
    });
    const resumedFrom = this.file.size;
    if (resumedFrom === 0) this.known = {};
    if (resumedFrom > 0) this.log.info({ resumedFrom, totalBytes: this.known.totalBytes }, 'resuming download');

    let done = false;
    try {
      const remaining = this.known.totalBytes !== undefined ? this.known.totalBytes - resumedFrom : 0;
      await ensureFreeSpace(paths.partialDir, remaining + policy.reserveBytes, `downloading ${this.url.href}`).catch((e) => {
        throw this.withContext(e);
      });
      const complete = this.known.totalBytes !== undefined && this.file.size === this.known.totalBytes;
      if (!complete) await this.transfer();
      const result = await this.finish(resumedFrom);
      done = true;
      return result;
    } catch (err) {
      // Keep what we have for the next call, unless there is nothing worth keeping or it was discarded.
      if (!(err instanceof ModeldError && err.code === 'DigestMismatch')) await this.keepOrDropPartial();
      throw err;
    } finally {
      if (!done) await this.file.close().catch(() => {});
    }
  }

  private async keepOrDropPartial(): Promise<void> {
    try {
      if (this.file.size > 0) return await this.saveProgress();
      await this.file.close().catch(() => {});
      await unlink(this.file.path).catch(() => {});
      this.deps.downloads.delete(this.key);
    } catch (err) {
      this.log.warn({ err }, 'could not record download progress');
    }
  }

  /** The retry loop: bounded attempts, backoff with jitter, resume on every retry. */
  private async transfer(): Promise<void> {
    const { policy } = this.deps;
    const dispatcher = this.deps.dispatcher ?? downloadDispatcher(policy.connectTimeoutMs, policy.proxy, policy.credentials);
    const throttle = this.deps.throttle ?? (policy.bandwidth > 0 ? new Throttle(policy.bandwidth) : undefined);
    const backoff = this.deps.sleep ?? sleep;
    let restarts = 0;
    let lastStatus: number | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        this.attempts++;
        try {
          await runAttempt(this.url, this.file, this.known, {
            dispatcher,
            policy,
            throttle,
            signal: this.opts.signal,
            onStart: async (meta) => {
              lastStatus = meta.status;
              this.known = { etag: meta.etag, lastModified: meta.lastModified, totalBytes: meta.totalBytes };
              if (meta.totalBytes !== undefined) {
                await ensureFreeSpace(this.deps.paths.partialDir, meta.totalBytes - this.file.size + policy.reserveBytes, `downloading ${this.url.href}`);
              }
              await this.saveProgress();
            },
            onChunk: async (n) => {
              this.fetched += n;
              this.opts.onBytes?.(n);
              this.progress(this.file.size, this.known.totalBytes);
              await this.maybeCheckpoint();
            },
          });
          return;
        } catch (err) {
          if (err instanceof RestartFromZero) {
            if (++restarts > MAX_RESTARTS) {
              throw this.withContext(new ModeldError('DownloadFailed', `server kept answering with inconsistent ranges: ${err.message}`), lastStatus);
            }
            this.log.warn({ reason: err.message }, 'starting the download over');
            await this.file.reset();
            this.known = {};
            await this.saveProgress();
            attempt--; // a clean start-over is not a failed attempt; MAX_RESTARTS bounds it
            continue;
          }
          const e = err instanceof ModeldError ? err : new ModeldError('DownloadFailed', (err as Error).message, { cause: err, retryable: false });
          if (typeof e.details.status === 'number') lastStatus = e.details.status;
          // NoSpace is retryable later (after gc), but not by hammering the server now.
          if (!e.retryable || e.code === 'NoSpace' || attempt >= policy.attempts) throw this.withContext(e, lastStatus);
          await this.saveProgress().catch(() => {});
          const waitMs = retryWait(attempt, policy, e.details.retryAfterMs as number | undefined);
          this.log.warn({ code: e.code, msg: e.message, attempt, waitMs, bytes: this.file.size }, 'download attempt failed, retrying');
          try {
            await backoff(waitMs, this.opts.signal);
            this.opts.signal?.throwIfAborted();
          } catch (sleepErr) {
            throw this.withContext(new ModeldError('Cancelled', 'download cancelled', { cause: sleepErr }), lastStatus);
          }
        }
      }
    } finally {
      if (!this.deps.dispatcher) await dispatcher.destroy().catch(() => {});
    }
  }

  /** Verify the digest, then adopt into the store; a mismatch deletes every byte. */
  private async finish(resumedFrom: number): Promise<FetchResult> {
    const { blobStore, downloads } = this.deps;
    await this.file.sync();
    const actual = this.file.digest();
    const size = this.file.size;
    const partialPath = this.file.path;
    if (this.expected && actual !== this.expected) {
      await this.file.close().catch(() => {});
      await unlink(partialPath).catch(() => {});
      downloads.delete(this.key);
      this.log.error({ expected: this.expected, actual }, 'digest mismatch: download discarded');
      const e = digestMismatch(this.expected, actual, this.rawUrl);
      throw new ModeldError('DigestMismatch', e.message, { details: { ...e.details, url: this.rawUrl, attempts: this.attempts } });
    }
    await this.file.close();
    let path: string;
    if (blobStore.has(actual)) {
      // Unverified download of content we already had.
      await unlink(partialPath).catch(() => {});
      blobStore.touch(actual);
      path = blobStore.pathOf(actual);
    } else {
      path = await blobStore.adopt(partialPath, actual, size, this.rawUrl);
    }
    downloads.delete(this.key);
    this.progress(size, size, true);
    this.log.info({ sha256: actual, size, fetched: this.fetched, resumedFrom, attempts: this.attempts }, 'download verified');
    return { sha256: actual, size, path, fetchedBytes: this.fetched, resumedFrom, fromStore: false };
  }

  private async maybeCheckpoint(): Promise<void> {
    const total = this.known.totalBytes;
    const every = Math.min(CHECKPOINT_MAX_BYTES, Math.max(CHECKPOINT_MIN_BYTES, total ? Math.floor(total / 100) : 4 * 1024 * 1024));
    const since = this.file.size - this.lastCheckpoint.bytes;
    if (since >= every || (since > 0 && performance.now() - this.lastCheckpoint.at >= CHECKPOINT_MS)) await this.saveProgress();
  }

  /** fdatasync, then record how many bytes are safely on disk. */
  private async saveProgress(): Promise<void> {
    await this.file.sync();
    this.deps.downloads.put({
      key: this.key,
      url: this.url.href,
      etag: this.known.etag,
      lastModified: this.known.lastModified,
      totalBytes: this.known.totalBytes,
      bytesDone: this.file.size,
      attempts: this.attempts,
    });
    this.lastCheckpoint = { at: performance.now(), bytes: this.file.size };
  }

  private withContext(err: unknown, status?: number): ModeldError {
    const e = err instanceof ModeldError ? err : new ModeldError('DownloadFailed', String(err), { cause: err });
    return new ModeldError(e.code, e.message, {
      retryable: e.retryable,
      cause: e.cause ?? e,
      details: { ...e.details, url: this.rawUrl, attempts: this.attempts, ...(status !== undefined ? { status } : {}) },
    });
  }
}
