/**
 * Delay before retry number `attempt` (1 = first retry): "full jitter", a uniform draw in
 * [0, min(max, base * 2^(attempt-1))], so many nodes failing together do not retry together.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(random() * ceiling);
}

/** Retry-After (seconds or an HTTP date) in ms, or undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The wait before the next attempt: backoff, but at least what the server asked for, never past the cap. */
export function retryWait(attempt: number, policy: { backoffBaseMs: number; backoffMaxMs: number }, retryAfterMs?: number, random?: () => number): number {
  const jittered = backoffDelay(attempt, policy.backoffBaseMs, policy.backoffMaxMs, random);
  return Math.min(policy.backoffMaxMs, Math.max(jittered, retryAfterMs ?? 0));
}
