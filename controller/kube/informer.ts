import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { sleep } from '../../shared/sleep.js';
import type { KubeRest } from './rest.js';
import { objectKey, type KubeObject } from './types.js';

// List + watch of one resource type into a local cache. Watches resume from the last seen
// resourceVersion (bookmarks included); a 410 Gone or an unreadable stream relists, and the
// relist is diffed against the cache so deletions missed while disconnected become DELETED
// events. Nothing is lost: every change ends up either in a watch event or in a relist diff.

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface InformerOptions<T extends KubeObject> {
  kc: KubeConfig;
  rest: KubeRest;
  /** Collection path, e.g. /api/v1/nodes or /apis/ai.kubeedge.io/v1alpha1/inferencemodels. */
  path: string;
  labelSelector?: string;
  log: Logger;
  onChange(type: ChangeType, obj: T, old: T | undefined): void;
  /** Server-side watch timeout; the watch is reopened from the last resourceVersion after it. */
  watchTimeoutSec?: number;
  backoffMs?: { min: number; max: number };
  onRestart?(reason: 'gone' | 'error' | 'closed'): void;
}

export interface Informer<T extends KubeObject> {
  /** Resolves after the first list has filled the cache. */
  start(signal: AbortSignal): Promise<void>;
  list(): T[];
  get(key: string): T | undefined;
  /** The resourceVersion the cache is at. */
  resourceVersion(): string;
}

class Gone extends Error {}

export function createInformer<T extends KubeObject>(opts: InformerOptions<T>): Informer<T> {
  const cache = new Map<string, T>();
  let rv = '';
  const backoff = opts.backoffMs ?? { min: 200, max: 30_000 };
  const watcher = new Watch(opts.kc);

  function apply(type: ChangeType, obj: T) {
    const key = objectKey(obj);
    const old = cache.get(key);
    if (type === 'DELETED') {
      if (!old) return;
      cache.delete(key);
      opts.onChange('DELETED', obj, old);
      return;
    }
    if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    cache.set(key, obj);
    opts.onChange(old ? 'MODIFIED' : 'ADDED', obj, old);
  }

  async function relist(signal: AbortSignal) {
    const list = await opts.rest.request<{ metadata: { resourceVersion: string }; items: T[] }>('GET', opts.path, {
      query: { labelSelector: opts.labelSelector },
      signal,
    });
    const seen = new Set<string>();
    for (const item of list.items) {
      seen.add(objectKey(item));
      apply('ADDED', item);
    }
    for (const [key, old] of [...cache]) if (!seen.has(key)) apply('DELETED', old);
    rv = list.metadata.resourceVersion;
  }

  /** One watch request; resolves when the server closes it, rejects with Gone on 410. */
  function watchOnce(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let gone = false;
      let controller: AbortController | undefined;
      const onAbort = () => controller?.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      const finish = (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (gone || (err as { statusCode?: number })?.statusCode === 410) reject(new Gone());
        else if (err && !signal.aborted) reject(err);
        else resolve();
      };
      watcher
        .watch(
          opts.path,
          { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: opts.watchTimeoutSec ?? 300, labelSelector: opts.labelSelector },
          (type: string, obj: any) => {
            if (gone) return;
            if (type === 'ERROR') {
              if (obj?.code === 410) gone = true;
              else opts.log.warn({ path: opts.path, status: obj }, 'watch error event');
              controller?.abort();
              return;
            }
            if (obj?.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
            if (type === 'BOOKMARK') return;
            if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') apply(type, obj as T);
          },
          finish,
        )
        .then((c) => {
          controller = c;
          if (signal.aborted) c.abort();
        }, finish);
    });
  }

  async function run(signal: AbortSignal, firstSynced: () => void) {
    let delay = backoff.min;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await relist(signal);
          needList = false;
          firstSynced();
        }
        await watchOnce(signal);
        delay = backoff.min;
        opts.onRestart?.('closed');
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Gone) {
          opts.log.info({ path: opts.path, resourceVersion: rv }, 'watch expired (410 Gone): relisting');
          opts.onRestart?.('gone');
          needList = true;
          continue;
        }
        opts.log.warn({ path: opts.path, err: (err as Error).message, retryInMs: delay }, 'list/watch failed');
        opts.onRestart?.('error');
        await sleep(delay * (0.5 + Math.random() / 2), signal);
        delay = Math.min(delay * 2, backoff.max);
      }
    }
  }

  return {
    start(signal) {
      return new Promise<void>((resolve, reject) => {
        signal.addEventListener('abort', () => reject(new Error('aborted before the first list')), { once: true });
        run(signal, resolve).catch(reject);
      });
    },
    list: () => [...cache.values()],
    get: (key) => cache.get(key),
    resourceVersion: () => rv,
  };
}
