import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { ModeldError } from '../errors.js';
import { tailFile } from '../fetch/tail-file.js';
import { unpackArchive, type UnpackLimits } from '../install/unpack.js';
import type { Logger } from '../log.js';

// Unpacking a download while it lands, into its own staging directory. Nothing it writes is used
// unless the bytes it unpacked are exactly the verified archive: every byte handed to the
// unpacker is hashed in order, the rest of the verified file is hashed after it, and the two
// together must give the archive's sha256. A download that started over on other bytes (a Range
// answered 200, a truncated and refilled partial file, whatever the tail noticed or not) fails
// that check, and the staged tree is dropped — it cannot mix two objects. When the same check
// passes on an archive the unpacker refused, the refusal stands for the verified archive too, and
// it is not unpacked a second time.

/** Refusals that depend on the archive's bytes alone (not on the disk, a limit that may be raised, or a cancel). */
const CONTENT_REFUSALS = new Set(['UnsafeArchive', 'CorruptArchive', 'UnsupportedArchive', 'ArchiveTooLarge', 'TooManyEntries']);

export type OverlapOutcome =
  /** The staged tree is the verified archive's content; `promote` took it. */
  | { kind: 'installed' }
  /** The verified archive itself is refused for this reason. */
  | { kind: 'refused'; error: ModeldError }
  /** Nothing usable: unpack the verified archive as usual. */
  | { kind: 'fallback'; why: string };

export interface OverlapOptions {
  /** The partial file the download appends to. */
  partialPath: string;
  sha256: string;
  staging: string;
  log: Logger;
  signal: AbortSignal;
  /** Limits for the unpack; `pending` is what the download still has to write to the same disk. */
  limits: (pending: () => number) => Promise<UnpackLimits>;
}

export function unpackWhileFetching(o: OverlapOptions) {
  const stop = new AbortController();
  const onAbort = () => stop.abort(o.signal.reason);
  o.signal.addEventListener('abort', onAbort, { once: true });
  let settle!: { resolve: (size: number) => void; reject: (err: unknown) => void };
  const finished = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
  finished.catch(() => {});
  let download = { bytes: 0, totalBytes: undefined as number | undefined };
  const pending = () => (download.totalBytes === undefined ? 0 : download.totalBytes - download.bytes);

  // What the unpacker was handed, in order.
  const seen = createHash('sha256');
  let seenBytes = 0;
  async function* hashed(src: AsyncIterable<Buffer>) {
    for await (const chunk of src) {
      seen.update(chunk);
      seenBytes += chunk.length;
      yield chunk;
    }
  }

  const unpacked: Promise<ModeldError | undefined> = o
    .limits(pending)
    .then((limits) => unpackArchive(hashed(tailFile(o.partialPath, finished, stop.signal)), o.staging, limits, { signal: stop.signal }))
    .then(
      () => undefined,
      (err: unknown) => {
        if (!stop.signal.aborted) o.log.debug({ err: (err as Error).message }, 'unpacking during the download did not work out');
        // The tail may be waiting for bytes the download has not written yet: end it, and close the file now.
        stop.abort(err);
        return err instanceof ModeldError ? err : new ModeldError('InstallFailed', String(err), { cause: err });
      },
    );

  /** Whether the bytes handed to the unpacker, then the rest of `archive`, are the verified archive. */
  async function sawVerifiedBytes(archive: string, size: number): Promise<boolean> {
    if (seenBytes > size) return false;
    const rest = createReadStream(archive, { start: seenBytes, highWaterMark: 1024 * 1024 });
    for await (const chunk of rest) seen.update(chunk as Buffer);
    return seen.digest('hex') === o.sha256;
  }

  const cleanup = async () => {
    o.signal.removeEventListener('abort', onAbort);
    await rm(o.staging, { recursive: true, force: true });
  };

  return {
    progress(p: { bytes: number; totalBytes?: number }) {
      download = { bytes: p.bytes, totalBytes: p.totalBytes };
    },
    async abandon(err: unknown): Promise<void> {
      settle.reject(err);
      stop.abort(err);
      await unpacked;
      await cleanup();
    },
    /** After the download verified: `archive` is the verified file (in the store), `promote` installs the staged tree. */
    async finish(size: number, archive: string, promote: (staging: string) => Promise<void>): Promise<OverlapOutcome> {
      settle.resolve(size);
      try {
        const refusal = await unpacked;
        if (refusal && !CONTENT_REFUSALS.has(refusal.code)) return { kind: 'fallback', why: refusal.message };
        if (!(await sawVerifiedBytes(archive, size))) {
          o.log.info('the download started over on other bytes while it was unpacked; unpacking the verified archive');
          return { kind: 'fallback', why: 'the unpacked bytes are not the verified archive' };
        }
        if (refusal) return { kind: 'refused', error: refusal };
        await promote(o.staging);
        return { kind: 'installed' };
      } finally {
        await cleanup();
      }
    },
  };
}
