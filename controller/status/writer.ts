import { Phase } from '../../shared/index.js';
import type { Logger } from 'pino';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { sleep } from '../../shared/sleep.js';
import { isStatus, type KubeRest } from '../kube/rest.js';
import { ROLLOUT_FIELDS } from '../rollout/types.js';

// Status writes through the status subresource, coalesced: at most one write per resource per
// interval, whatever number of node reports arrive in between; identical statuses are not
// written again. Conflicts (409) and throttling (429, 5xx) are retried with a bounded budget.

export interface StatusWriterOptions {
  rest: KubeRest;
  /** /apis/<group>/<version>/namespaces/<ns>/<plural>/<name> for a key "ns/name". */
  pathFor(key: string): string;
  /** The status to write now, or undefined when the resource is gone. */
  compute(key: string): Record<string, unknown> | undefined;
  intervalMs: number;
  attempts?: number;
  log: Logger;
  onWrite?(result: 'ok' | 'conflict' | 'error' | 'skipped'): void;
  /**
   * Called as a write starts; the function it returns hears once how it ended: true when the
   * resource now shows what was computed (written, already identical, or the resource is gone).
   * The controller acks node statuses only then.
   */
  begin?(key: string): ((settled: boolean) => void) | undefined;
}

export class StatusWriter {
  private readonly last = new Map<string, { at: number; json: string }>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** At most one write per resource at a time; a mark meanwhile asks for one more after it. */
  private readonly writing = new KeyedMutex();
  private readonly again = new Set<string>();
  /** Aborted by stop(): also ends a retry wait at once. */
  private readonly stopping = new AbortController();

  constructor(private readonly opts: StatusWriterOptions) {}

  /** Asks for a write of this resource's status, soon but not more often than the interval. */
  mark(key: string): void {
    if (this.stopping.signal.aborted || this.timers.has(key)) return;
    if (this.writing.busy(key)) {
      this.again.add(key);
      return;
    }
    const prev = this.last.get(key);
    const wait = prev ? Math.max(0, prev.at + this.opts.intervalMs - Date.now()) : 0;
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        void this.writing.run(key, () => this.flush(key)).finally(() => {
          if (this.again.delete(key)) this.mark(key);
        });
      }, wait),
    );
  }

  forget(key: string): void {
    this.last.delete(key);
  }

  /** Waits for pending writes; used at shutdown and by tests. */
  async idle(): Promise<void> {
    while (this.timers.size || this.writing.size) await Promise.all([this.writing.idle(), sleep(20)]);
  }

  stop(): void {
    this.stopping.abort();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private async flush(key: string): Promise<void> {
    const settle = this.opts.begin?.(key);
    let settled = false;
    try {
      settled = await this.write(key);
    } finally {
      settle?.(settled);
    }
  }

  /** True when the resource shows the computed status at the end. */
  private async write(key: string): Promise<boolean> {
    const attempts = this.opts.attempts ?? 5;
    for (let attempt = 1; attempt <= attempts && !this.stopping.signal.aborted; attempt++) {
      const status = this.opts.compute(key);
      if (!status) return false;
      const json = JSON.stringify(status);
      if (this.last.get(key)?.json === json) {
        this.opts.onWrite?.('skipped');
        return true;
      }
      try {
        // A merge patch of the whole status: arrays (nodes, conditions) are replaced as a whole.
        await this.opts.rest.request('PATCH', this.opts.pathFor(key) + '/status', {
          body: { status: nullMissing(status) },
          contentType: 'application/merge-patch+json',
        });
        this.last.set(key, { at: Date.now(), json });
        this.opts.onWrite?.('ok');
        return true;
      } catch (err) {
        if (isStatus(err, 404)) return true;
        const conflict = isStatus(err, 409);
        this.opts.onWrite?.(conflict ? 'conflict' : 'error');
        const retryable = conflict || isStatus(err, 429) || (err as { status?: number }).status === undefined || (err as { status: number }).status >= 500;
        this.opts.log.warn({ model: key, attempt, err: (err as Error).message }, 'status write failed');
        if (!retryable) return false;
        await sleep(Math.min(2000, 50 * 2 ** attempt), this.stopping.signal);
      }
    }
    // Out of budget: leave it for the next report or the periodic resync to try again.
    this.last.delete(key);
    return false;
  }
}

/** Fields the controller no longer sets must be cleared explicitly in a merge patch. */
function nullMissing(status: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { url: null, servingVersion: null, serving: null, rollout: null, ...status };
  // `phases` is a map, which a merge patch merges: a phase no node is in any more is cleared.
  if (status.phases && typeof status.phases === 'object') out.phases = { ...Object.fromEntries([...Phase.options, 'NoReport'].map((p) => [p, null])), ...status.phases };
  // A merge patch merges nested objects: the rollout's fields that are gone must be nulled too.
  if (status.rollout && typeof status.rollout === 'object') out.rollout = { ...Object.fromEntries(ROLLOUT_FIELDS.map((k) => [k, null])), ...status.rollout };
  return out;
}
