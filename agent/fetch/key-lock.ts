import { ModeldError } from '../errors.js';

/** One holder per key at a time, in this process: two fetches of the same blob do not share a partial file. */
export class KeyLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    try {
      await waitOrAbort(prev, signal);
      return await fn();
    } finally {
      // A waiter that gave up still passes the turn on only after its predecessor is done.
      void prev.then(() => {
        release();
        if (this.tails.get(key) === tail) this.tails.delete(key);
      });
    }
  }
}

function waitOrAbort(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, reject);
  });
}

const cancelled = () => new ModeldError('Cancelled', 'cancelled while waiting for another download of the same blob');
