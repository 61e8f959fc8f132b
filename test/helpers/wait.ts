// The one wait of the tests: poll a condition until it holds, never a fixed sleep. Deadlines are
// generous (the suite must pass on a loaded machine) and always bounded (a broken test fails,
// it does not hang); no test asserts on how long something took.

/** The default deadline: far beyond what anything takes on a quiet machine. */
export const WAIT_MS = 60_000;

async function poll<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string, retryThrows: boolean): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      if (!retryThrows) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Polls until `cond` holds (a throw fails at once); fails with `what` after the timeout. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, what = 'condition'): Promise<void> {
  await poll(cond, timeoutMs, what, false);
}

/** Polls until `fn` returns a truthy value and returns it; a throw counts as "not yet" and is named at the deadline. */
export function waitForValue<T>(fn: () => T | Promise<T>, timeoutMs = WAIT_MS, what = 'condition'): Promise<NonNullable<T>> {
  return poll(fn, timeoutMs, what, true);
}
