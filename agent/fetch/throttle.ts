import { sleep } from '../../shared/sleep.js';

/**
 * Token bucket for the bandwidth cap. Tokens may go negative (a chunk bigger than the bucket
 * is let through, then paid for by waiting), so the average rate holds for any chunk size.
 */
export class Throttle {
  private tokens: number;
  private last: number;
  private readonly burst: number;

  constructor(private readonly bytesPerSecond: number, private readonly now: () => number = () => performance.now()) {
    // A small burst keeps the rate honest over short downloads too.
    this.burst = Math.max(16 * 1024, Math.floor(bytesPerSecond / 8));
    this.tokens = this.burst;
    this.last = this.now();
  }

  /** Waits until `bytes` may pass. Rejects with the signal's reason when aborted. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.bytesPerSecond);
    this.last = t;
    this.tokens -= bytes;
    if (this.tokens < 0) {
      await sleep(Math.ceil((-this.tokens / this.bytesPerSecond) * 1000), signal);
      signal?.throwIfAborted();
    }
  }
}
