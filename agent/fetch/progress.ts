import type { FetchOptions } from './download.js';

/** onProgress at most every intervalMs, plus a forced final call. */
export function progressEmitter(intervalMs: number, onProgress: FetchOptions['onProgress']) {
  let last = -Infinity;
  return (bytes: number, totalBytes: number | undefined, final = false) => {
    if (!onProgress) return;
    const t = performance.now();
    if (!final && t - last < intervalMs) return;
    last = t;
    onProgress({ bytes, totalBytes });
  };
}
