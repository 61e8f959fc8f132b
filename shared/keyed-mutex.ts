// The one per-key serialiser of both programs (imported from here, not from the wire contract in
// index.ts). A single queue is this with a fixed key.

interface Waiter {
  /** Called when it is this waiter's turn. */
  grant(): void;
}

/**
 * One holder per key at a time, in this process; callers of one key get their turn in call order
 * (FIFO), and different keys never wait for each other. A waiter whose signal aborts leaves the
 * queue at once, rejected with the signal's reason, and is never let in; those behind it keep their
 * order and still wait for the holder. A key is forgotten once nobody holds or waits for it, so the
 * mutex does not grow with the keys it has seen. Keys compare as Map keys do (objects by identity).
 */
export class KeyedMutex<K = string> {
  /** Per key: the holder first, then the waiters in order. */
  private readonly queues = new Map<K, Waiter[]>();
  private idleWaiters: Array<() => void> = [];

  /**
   * Waits for the key, then returns the function that gives it back (calling it again does
   * nothing). Callers must call it, in a `finally`.
   */
  acquire(key: K, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const queue = this.queues.get(key);
    return new Promise<() => void>((resolve, reject) => {
      let released = false;
      const me: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(() => {
            if (released) return;
            released = true;
            this.passOn(key);
          });
        },
      };
      const onAbort = () => {
        const q = this.queues.get(key);
        const at = q ? q.indexOf(me) : -1;
        // Already let in (a release earlier in this same abort dispatch): it holds the key now.
        if (at < 1) return;
        q!.splice(at, 1);
        reject(signal!.reason);
      };
      if (!queue) {
        this.queues.set(key, [me]);
        me.grant();
        return;
      }
      queue.push(me);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs `fn` holding the key. `fn` does not start once `signal` has aborted. */
  async run<T>(key: K, fn: () => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(key, signal);
    try {
      signal?.throwIfAborted();
      return await fn();
    } finally {
      release();
    }
  }

  /** True while someone holds or waits for the key. */
  busy(key: K): boolean {
    return this.queues.has(key);
  }

  /** How many keys are held or waited for: 0 when idle. */
  get size(): number {
    return this.queues.size;
  }

  /** Resolves once no key is held or waited for. */
  idle(): Promise<void> {
    if (this.queues.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private passOn(key: K): void {
    const queue = this.queues.get(key)!;
    queue.shift(); // the holder
    if (queue.length > 0) return queue[0].grant();
    this.queues.delete(key);
    if (this.queues.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
