/**
 * `p`, or a rejection with the signal's reason once it aborts. Unlike `Promise.race([p, never])`
 * this leaves nothing behind: a race against a promise that never settles keeps every raced
 * promise — and the file chunk it resolved with — reachable, so unpacking a 1 GiB file held 1 GiB.
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
