// Streaming, refusing unpack of a .tar / .tar.gz into a fresh directory under staging/.
// We gunzip ourselves (counting inflated bytes, so a bomb stops early) and feed plain tar to
// tar's Parser, which only splits headers and bodies; every decision about what gets written is
// ours (entry-writer.ts). Any refusal removes the whole destination.
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { once } from 'node:events';
import { dirname, resolve, sep } from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { untilAborted } from '../until-aborted.js';
import { ModeldError } from '../errors.js';
import { archiveKind, detectArchive, isGzipMagic, looksLikeTarHeader, type ArchiveKind } from './detect.js';
import { checkHeader, EntryWriter, isFileEntry, unsafe } from './entry-writer.js';
import { rmTree } from './rm-tree.js';

export interface UnpackLimits {
  /** Total bytes of file contents. */
  maxBytes: number;
  /** Entries of any kind (files, directories, links). */
  maxEntries: number;
  /** Inflated bytes per compressed byte, checked once past RATIO_FLOOR inflated (gzip only). */
  maxRatio?: number;
  /** Bytes of file contents the disk may still take beyond its reserve (asked at each header). */
  roomBytes?: () => number;
}

/** Below this many inflated bytes no ratio is too high: small, very compressible files (configs, vocabularies) are fine. */
const RATIO_FLOOR = 64 * 1024 * 1024;

/** Headers, pax records and padding allowed per entry on top of maxBytes in the inflated stream. */
const OVERHEAD_PER_ENTRY = 16 * 1024;

function assertInStaging(destDir: string): void {
  if (!resolve(destDir).split(sep).slice(0, -1).includes('staging')) {
    throw new ModeldError('Internal', `unpack destination must be inside a staging/ directory: ${destDir}`);
  }
}

function classify(err: unknown): ModeldError {
  if (err instanceof ModeldError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return new ModeldError('NoSpace', `disk full while unpacking: ${e.message}`, { cause: err, retryable: true });
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) return new ModeldError('CorruptArchive', `corrupt gzip data: ${e.message}`, { cause: err });
  if (e?.name === 'AbortError') return new ModeldError('Cancelled', 'unpack cancelled', { cause: err });
  return new ModeldError('InstallFailed', `unpack failed: ${e?.message ?? String(err)}`, { cause: err });
}

/** An archive file, or its bytes as they arrive (unpacking while the download runs). */
export type ArchiveSource = string | AsyncIterable<Buffer>;

function tarStream(raw: Readable, kind: ArchiveKind): Readable {
  if (kind === 'tar') return raw;
  // pipeline destroys both ends on error or when the consumer stops early.
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  // The unpack learns of a failure through its read loop. zlib may report one more after the loop
  // has stopped reading and pipeline has let go (Z_BUF_ERROR on a flush of a refused archive):
  // with no listener that one would end the daemon.
  gunzip.on('error', () => {});
  return pipeline(raw, gunzip, () => {});
}

interface OpenedArchive {
  tar: Readable;
  kind: ArchiveKind;
  /** Archive bytes read so far (compressed, for a .tar.gz). */
  readBytes(): number;
}

/** The tar bytes of `src`, its kind told by magic bytes (a stream is peeked, not rewound). */
async function openArchive(src: ArchiveSource): Promise<OpenedArchive> {
  let read = 0;
  const readBytes = () => read;
  if (typeof src === 'string') {
    const kind = await detectArchive(src);
    const raw = createReadStream(src, { highWaterMark: 1024 * 1024 });
    // Beside pipe() (attached in the same tick): counts what gunzip is fed. Not on a plain tar, whose
    // stream is read later by the loop itself: a 'data' listener would start it flowing now.
    if (kind === 'tar.gz') raw.on('data', (c) => void (read += c.length));
    return { tar: tarStream(raw, kind), kind, readBytes };
  }
  const it = src[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < 512 && !ended) {
    const next = await it.next();
    if (next.done) ended = true;
    else head = Buffer.concat([head, next.value]);
  }
  const kind = archiveKind(head);
  read = head.length;
  async function* all() {
    try {
      yield head;
      while (!ended) {
        const next = await it.next();
        if (next.done) return;
        read += next.value.length;
        yield next.value;
      }
    } finally {
      // A consumer that stops early (a refused archive) ends the source too: a tailed download is closed now, not at a GC.
      await it.return?.();
    }
  }
  return { tar: tarStream(Readable.from(all(), { objectMode: false }), kind), kind, readBytes };
}

export async function unpackArchive(
  archive: ArchiveSource,
  destDir: string,
  limits: UnpackLimits,
  opts: { signal?: AbortSignal } = {},
): Promise<{ files: number; bytes: number }> {
  assertInStaging(destDir);
  const opened = await openArchive(archive);
  const source = opened.tar;
  try {
    await mkdir(dirname(destDir), { recursive: true });
    await rmTree(destDir); // debris of an earlier attempt
    await mkdir(destDir, 0o755);
  } catch (err) {
    source.destroy();
    throw classify(err);
  }

  const parser = new Parser({ strict: false, brotli: false, zstd: false });
  const live = new Set<ReadEntry>();
  let failure: ModeldError | undefined;
  const stop = new AbortController();
  const writer = new EntryWriter(destDir, stop.signal);
  const fail = (err: unknown): void => {
    if (failure) return;
    failure = classify(err);
    stop.abort(failure);
    for (const e of live) e.destroy(); // wake a writer waiting for a body that will never come
  };

  let entries = 0;
  let declaredBytes = 0;
  let sawEnd = false;
  // Entries are written one at a time, in archive order (a link may name an earlier entry).
  const writes = new KeyedMutex();
  parser.on('warn', (_code: string, message: string) => fail(new ModeldError('CorruptArchive', `corrupt tar data: ${message}`)));
  parser.on('error', (err: Error) => fail(new ModeldError('CorruptArchive', `corrupt tar data: ${err.message}`)));
  parser.on('ignoredEntry', (e: ReadEntry) => fail(unsafe(e.path, e.meta ? 'oversized metadata header' : `entry type ${e.type} is not allowed`)));
  parser.on('nullBlock', () => (sawEnd = true));
  parser.on('eof', () => (sawEnd = true));
  parser.on('entry', (entry: ReadEntry) => {
    if (failure) return void entry.resume();
    try {
      // Limits and header checks run as the header arrives, before any body byte is inflated.
      if (++entries > limits.maxEntries) {
        throw new ModeldError('TooManyEntries', `archive has more than ${limits.maxEntries} entries (at '${entry.path}')`, { details: { entry: entry.path, limit: limits.maxEntries } });
      }
      if (!Number.isSafeInteger(entry.size) || entry.size < 0) {
        throw new ModeldError('CorruptArchive', `corrupt tar data: bad size for '${entry.path}'`, { details: { entry: entry.path } });
      }
      if (isFileEntry(entry.type)) {
        declaredBytes += entry.size;
        if (declaredBytes > limits.maxBytes) {
          throw new ModeldError('ArchiveTooLarge', `unpacked size exceeds ${limits.maxBytes} bytes at '${entry.path}' (${entry.size} bytes)`, { details: { entry: entry.path, limit: limits.maxBytes } });
        }
        const room = limits.roomBytes?.();
        if (room !== undefined && declaredBytes > room) {
          throw new ModeldError('NoSpace', `unpacking needs more than ${Math.max(0, room)} bytes, all the disk has beyond its free-space reserve (at '${entry.path}')`, {
            retryable: true,
            details: { entry: entry.path, roomBytes: room },
          });
        }
      }
      const parts = checkHeader(entry);
      live.add(entry);
      entry.on('end', () => live.delete(entry));
      // A refusal destroys the entries in flight; tar may still write a truncated body's last bytes
      // into one as it ends, and that 'error' (write after destroy) must not reach the process.
      entry.on('error', () => {});
      void writes.run('entries', () => (failure ? undefined : writer.write(entry, parts))).catch(fail);
    } catch (err) {
      fail(err);
    }
  });

  const streamCap = limits.maxBytes + (limits.maxEntries + 2) * OVERHEAD_PER_ENTRY + 1024 * 1024;
  let inflated = 0;
  let head: Buffer | undefined = Buffer.alloc(0);
  const onAbort = () => fail(new ModeldError('Cancelled', 'unpack cancelled'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (opts.signal?.aborted) onAbort();
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (failure) break;
      inflated += chunk.length;
      if (inflated > streamCap) {
        fail(new ModeldError('ArchiveTooLarge', `archive inflates past ${streamCap} bytes`, { details: { inflatedBytes: inflated } }));
        break;
      }
      if (limits.maxRatio && opened.kind === 'tar.gz' && inflated > RATIO_FLOOR && inflated > limits.maxRatio * opened.readBytes()) {
        const ratio = Math.round(inflated / Math.max(1, opened.readBytes()));
        fail(new ModeldError('ArchiveTooLarge', `archive inflates ${ratio}:1, past the compression ratio limit of ${limits.maxRatio}:1 (limits.compressionRatio): a gzip bomb, or set the limit higher`, { details: { inflatedBytes: inflated, ratio, limit: limits.maxRatio } }));
        break;
      }
      if (head) {
        // The inflated stream must itself be a tar, or the parser would sniff and inflate it again.
        head = Buffer.concat([head, chunk]);
        if (head.length < 512) continue;
        if (isGzipMagic(head) || !looksLikeTarHeader(head)) {
          fail(new ModeldError('UnsupportedArchive', 'gzip content is not a tar archive'));
          break;
        }
        const first = head;
        head = undefined;
        if (!parser.write(first)) await untilAborted(once(parser, 'drain'), stop.signal);
        continue;
      }
      if (sawEnd) break; // data past the end-of-archive marker is ignored, not inflated
      if (!parser.write(chunk)) await untilAborted(once(parser, 'drain'), stop.signal);
    }
    if (!failure && head) fail(new ModeldError('UnsupportedArchive', 'gzip content is too short to be a tar archive'));
    if (!failure) {
      const done = once(parser, 'end');
      parser.end();
      await untilAborted(done, stop.signal);
      await writes.idle();
      if (!failure && !sawEnd) fail(new ModeldError('CorruptArchive', 'truncated archive: no end-of-archive marker'));
      if (!failure) writer.checkAllLinks();
    }
    if (failure) throw failure;
    return { files: writer.files, bytes: writer.bytes };
  } catch (err) {
    fail(err);
    source.destroy();
    await writes.idle();
    await rmTree(destDir);
    const refused = failure ?? classify(err);
    refused.details.inflatedBytes ??= inflated; // lets callers (and tests) see how early a refusal stopped
    throw refused;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}
