// A counting semaphore: at most `capacity` holders at a time, in this process. The node-wide
// limits (node-limits.ts) are three of these. For one holder per key, use shared/keyed-mutex.ts.

interface Waiter {
  grant(): void;
}

/**
 * Waiters get their slot in call order (FIFO): a free slot is handed to the first waiter, and
 * tryAcquire never jumps the queue. A waiter whose signal aborts leaves the queue at once,
 * rejected with the signal's reason, and never holds a slot; those behind it keep their order.
 */
export class Semaphore {
  private held = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`semaphore capacity must be an integer of at least 1, not ${capacity}`);
  }

  /** Slots held now. */
  get inUse(): number {
    return this.held;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  /** A slot now if one is free and nobody waits, else undefined. */
  tryAcquire(): (() => void) | undefined {
    if (this.held >= this.capacity || this.queue.length > 0) return undefined;
    this.held++;
    return this.releaser();
  }

  /** Waits for a slot; returns the function that gives it back (idempotent; call it in a `finally`). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise<() => void>((resolve, reject) => {
      const me: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
      };
      const onAbort = () => {
        const at = this.queue.indexOf(me);
        if (at < 0) return; // already granted: it holds the slot
        this.queue.splice(at, 1);
        reject(signal!.reason);
      };
      this.queue.push(me);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      // The slot passes straight to the next waiter: `held` stays, nobody can slip in between.
      if (next) next.grant();
      else this.held--;
    };
  }
}
