import { statfs } from 'node:fs/promises';
import { ModeldError } from '../errors.js';

/** Bytes an unprivileged writer may still use on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Throws NoSpace unless `needBytes` fit on `dir`'s filesystem. */
export async function ensureFreeSpace(dir: string, needBytes: number, what: string): Promise<void> {
  const free = await freeBytes(dir);
  if (free < needBytes) {
    throw new ModeldError('NoSpace', `not enough free space for ${what}: need ${needBytes} bytes, ${free} free on ${dir}`, {
      retryable: true,
      details: { needBytes, freeBytes: free, dir },
    });
  }
}
