import { open, type FileHandle } from 'node:fs/promises';
import { sleep } from '../../shared/sleep.js';
import { ModeldError } from '../errors.js';

const CHUNK = 1024 * 1024;
const POLL_MS = 10;

/**
 * The bytes of a file that another writer is still appending to (a download in flight), as they
 * land, until `finished` resolves with the final size. The file may be renamed meanwhile (adopted
 * into the store): an open descriptor follows it. If the file shrinks (the download started over)
 * this throws, and the consumer must start over from the finished file instead.
 */
export async function* tailFile(path: string, finished: Promise<number>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let finalSize: number | undefined;
  let failed: unknown;
  finished.then(
    (n) => (finalSize = n),
    (err) => (failed = err ?? new Error('download failed')),
  );
  let fh: FileHandle | undefined;
  try {
    while (!fh) {
      signal?.throwIfAborted();
      if (failed) throw failed;
      fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT' || finalSize !== undefined) throw err;
        return undefined;
      });
      if (!fh) await sleep(POLL_MS, signal); // an abort is thrown at the top of the loop
    }
    let offset = 0;
    for (;;) {
      signal?.throwIfAborted();
      if (failed) throw failed;
      const size = (await fh.stat()).size;
      if (size < offset) throw new ModeldError('Internal', 'the download started over under the unpacker');
      const limit = finalSize ?? size;
      if (offset < limit) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, limit - offset));
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        offset += bytesRead;
        if (bytesRead > 0) yield buf.subarray(0, bytesRead);
        continue;
      }
      if (finalSize !== undefined && offset >= finalSize) return;
      await sleep(POLL_MS, signal);
    }
  } finally {
    await fh?.close();
  }
}
