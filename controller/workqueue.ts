// A rate-limited work queue with client-go's semantics (k8s.io/client-go/util/workqueue):
//  - a key added while it waits is queued once (dedup);
//  - a key is never handed out while it is being processed; added meanwhile, it is handed out
//    again once `done` (so no key runs concurrently with itself, and no change is missed);
//  - `addRateLimited` re-adds a key after the larger of its own exponential backoff
//    (ItemExponentialFailureRateLimiter: base * 2^failures, capped) and a global token bucket
//    (BucketRateLimiter: qps with a burst), as DefaultControllerRateLimiter combines them;
//  - `forget` resets a key's backoff (on success). A plain `add` is never rate limited.

export interface RateLimitOptions {
  /** Per-key backoff after the first failure. */
  baseDelayMs: number;
  /** Per-key backoff ceiling. */
  maxDelayMs: number;
  /** Global bucket: re-adds per second, and how many may go at once. */
  qps: number;
  burst: number;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { baseDelayMs: 500, maxDelayMs: 300_000, qps: 10, burst: 100 };

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly waiting = new Map<string, unknown>();
  private readonly getters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;
  /** Token bucket state (BucketRateLimiter). */
  private tokens: number;
  private tokensAt: number;

  constructor(
    private readonly limits: RateLimitOptions = DEFAULT_RATE_LIMIT,
    private readonly clock: Clock = realClock,
  ) {
    this.tokens = limits.burst;
    this.tokensAt = clock.now();
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const get = this.getters.shift();
    if (get) {
      this.dirty.delete(key);
      this.processing.add(key);
      get(key);
    } else this.queue.push(key);
  }

  /** Adds the key after `ms`; an earlier pending re-add of the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    if (this.waiting.has(key)) return;
    this.waiting.set(
      key,
      this.clock.setTimeout(() => {
        this.waiting.delete(key);
        this.add(key);
      }, ms),
    );
  }

  /** Re-adds a key that failed, after its backoff and the global rate limit. */
  addRateLimited(key: string): number {
    const delay = this.when(key);
    this.addAfter(key, delay);
    return delay;
  }

  /** The delay `addRateLimited` would use now, counting this failure (MaxOfRateLimiter.When). */
  private when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const perKey = Math.min(this.limits.baseDelayMs * 2 ** Math.min(n, 40), this.limits.maxDelayMs);
    return Math.max(perKey, this.reserveToken());
  }

  /** rate.Limiter.Reserve: a token now if one is left, else the wait until the next one. */
  private reserveToken(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.limits.burst, this.tokens + ((now - this.tokensAt) / 1000) * this.limits.qps);
    this.tokensAt = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.limits.qps) * 1000);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to work on; undefined once the queue shuts down. Call `done(key)` after. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.getters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  /** Keys waiting or being worked on now (not the ones waiting out a backoff). */
  get length(): number {
    return this.queue.length + this.processing.size;
  }

  /** Whether nothing is queued, processing or waiting out a backoff. */
  idle(): boolean {
    return this.queue.length === 0 && this.processing.size === 0 && this.waiting.size === 0;
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const t of this.waiting.values()) this.clock.clearTimeout(t);
    this.waiting.clear();
    this.queue.length = 0;
    for (const get of this.getters.splice(0)) get(undefined);
  }
}

/**
 * Runs `workers` loops that take keys and hand them to `handle`: success forgets the key's
 * backoff, a throw re-adds it rate limited (and `onError` hears of it). Resolves when the queue
 * shuts down and every loop has finished its key.
 */
export async function runWorkers(queue: WorkQueue, workers: number, handle: (key: string) => Promise<void>, onError: (key: string, err: unknown, retryInMs: number) => void): Promise<void> {
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (;;) {
        const key = await queue.get();
        if (key === undefined) return;
        try {
          await handle(key);
          queue.forget(key);
        } catch (err) {
          onError(key, err, queue.addRateLimited(key));
        } finally {
          queue.done(key);
        }
      }
    }),
  );
}
