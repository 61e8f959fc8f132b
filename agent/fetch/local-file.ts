import { mkdir, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ModeldError } from '../errors.js';
import { ensureFreeSpace } from './disk-space.js';
import type { FetchDeps, FetchOptions, FetchResult } from './download.js';
import { progressEmitter } from './progress.js';

/** A file: URL (when the policy allows it): a hashed copy into the store, verified like a download. */
export async function copyLocalFile(url: URL, expected: string | undefined, deps: FetchDeps, opts: FetchOptions): Promise<FetchResult> {
  const { policy } = deps;
  const src = fileURLToPath(url);
  const st = await stat(src).catch((err: NodeJS.ErrnoException) => {
    throw new ModeldError('DownloadFailed', `cannot read ${src}: ${err.code ?? err.message}`, { cause: err, details: { url: url.href } });
  });
  if (st.size > policy.maxBytes) {
    throw new ModeldError('TooLarge', `${src} is ${st.size} bytes, over the limit of ${policy.maxBytes}`, { details: { url: url.href, totalBytes: st.size, maxBytes: policy.maxBytes } });
  }
  await mkdir(deps.paths.partialDir, { recursive: true });
  await ensureFreeSpace(deps.paths.partialDir, st.size + policy.reserveBytes, `copying ${src}`);
  const progress = progressEmitter(policy.progressIntervalMs, opts.onProgress);
  const r = await deps.blobStore
    .importFile(src, { expectedSha256: expected, signal: opts.signal, onProgress: (bytes, total) => progress(bytes, total) })
    .catch((err: unknown) => {
      const e = err instanceof ModeldError ? err : new ModeldError('DownloadFailed', String(err), { cause: err });
      throw new ModeldError(e.code, e.message, { retryable: e.retryable, cause: e.cause ?? e, details: { ...e.details, url: url.href, attempts: 1 } });
    });
  progress(r.size, r.size, true);
  return { sha256: r.sha256, size: r.size, path: r.path, fetchedBytes: r.alreadyPresent ? 0 : r.size, resumedFrom: 0, fromStore: r.alreadyPresent };
}
