// The one sleep of both programs (the agent and the controller import it from here, not from the
// wire contract in index.ts).

/**
 * Waits `ms`, or less when `signal` aborts. Resolves either way, never rejects: a loop checks
 * `signal.aborted` after it, and a caller that must fail on abort calls `signal.throwIfAborted()`.
 * Whichever comes first, the timer is cleared and the abort listener removed, so a daemon that
 * sleeps thousands of times on one long-lived signal leaves nothing behind on it.
 * `unref`: the timer does not keep the process alive by itself.
 */
export function sleep(ms: number, signal?: AbortSignal, opts: { unref?: boolean } = {}): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    if (opts.unref) timer.unref();
    signal?.addEventListener('abort', wake, { once: true });
  });
}
