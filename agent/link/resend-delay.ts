/**
 * How long a published status waits for the controller's ack before it goes out again, after its
 * n-th publish (n >= 1): ackTimeoutMs, doubling, never more than ackMaxDelayMs.
 */
export function resendDelay(attempts: number, b: { ackTimeoutMs: number; ackMaxDelayMs: number }): number {
  return Math.min(b.ackTimeoutMs * 2 ** Math.min(Math.max(attempts, 1) - 1, 30), b.ackMaxDelayMs);
}
