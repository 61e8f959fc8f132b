import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import { Throttle } from '../fetch/throttle.js';
import { Semaphore } from './semaphore.js';

// What the whole node shares between its models, so that a busy board (after a boot, every model
// at once) does one thing at a time instead of everything together: slots for downloads
// (limits.fetches), installs (limits.installs) and runtime starts (limits.starts), and one
// bandwidth budget (fetch.bandwidth) that every download takes its bytes from. Built once in
// main.ts; the fetch, install and start steps take their slot here.

export type SlotKind = 'fetch' | 'install' | 'start';

/** The status reason of a model kept waiting for a slot (its phase is the step's: Downloading...). */
export const WAITING_FOR_SLOT = 'WaitingForSlot' as const;

const WHAT: Record<SlotKind, string> = { fetch: 'a download slot', install: 'an install slot', start: 'a runtime start slot' };

export interface SlotOptions {
  /** Aborts the wait (a newer spec): the call throws Cancelled and `fn` does not run. */
  signal?: AbortSignal;
  /** Told once, before waiting, when no slot is free: what the model waits for (for its status). */
  onWait?: (message: string) => void;
}

export class NodeLimits {
  /** The node's bandwidth budget, shared by every download; undefined: no cap. */
  readonly bandwidth: Throttle | undefined;
  private readonly slots: Record<SlotKind, Semaphore>;

  constructor(limits: { fetches: number; installs: number; starts: number; bandwidth?: number }) {
    this.slots = { fetch: new Semaphore(limits.fetches), install: new Semaphore(limits.installs), start: new Semaphore(limits.starts) };
    this.bandwidth = limits.bandwidth ? new Throttle(limits.bandwidth) : undefined;
  }

  capacity(kind: SlotKind): number {
    return this.slots[kind].capacity;
  }

  inUse(kind: SlotKind): number {
    return this.slots[kind].inUse;
  }

  /**
   * Runs `fn` holding one slot of `kind`, FIFO among those waiting. The slot is given back when
   * `fn` settles, or earlier when `fn` calls the `release` it is handed.
   */
  async withSlot<T>(kind: SlotKind, fn: (release: () => void) => Promise<T>, opts: SlotOptions = {}): Promise<T> {
    const slots = this.slots[kind];
    let release = slots.tryAcquire();
    if (!release) {
      const ahead = slots.waiting;
      opts.onWait?.(`waiting for ${WHAT[kind]} (${slots.inUse} of ${slots.capacity} in use${ahead ? `, ${ahead} waiting ahead` : ''})`);
      try {
        release = await slots.acquire(opts.signal);
      } catch (err) {
        throw new ModeldError('Cancelled', `cancelled while waiting for ${WHAT[kind]}`, { cause: err });
      }
    }
    try {
      return await fn(release);
    } finally {
      release();
    }
  }
}

export const nodeLimitsFromConfig = (config: Config): NodeLimits =>
  new NodeLimits({ fetches: config.limits.fetches, installs: config.limits.installs, starts: config.limits.starts, bandwidth: config.fetch.bandwidth });
