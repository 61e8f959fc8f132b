import { ModeldError } from '../errors.js';
import type { EventRecord } from '../store/events.js';
import type { Store } from '../store/index.js';

// What `modeld events` reads (GET /v1/events and the read-only fallback alike): the newest
// events, or those after an id (--follow), of the node or one model. A model the node knows
// nothing about is NotFound, as `modeld status` says it.

export interface EventsQuery {
  model?: { namespace: string; name: string };
  limit: number;
  /** Only events after this id, oldest first; without it, the newest, newest first. */
  after?: number;
}

export function readEvents(store: Pick<Store, 'specs' | 'models' | 'versions' | 'events'>, q: EventsQuery): EventRecord[] {
  const events = q.after !== undefined ? store.events.after(q.after, q.limit, q.model) : store.events.recent(q.limit, q.model);
  if (q.model && !events.length) {
    const { namespace, name } = q.model;
    const known = store.specs.get(namespace, name) || store.models.get(namespace, name) || store.versions.listFor(namespace, name).length || store.events.recent(1, q.model).length;
    if (!known) throw new ModeldError('NotFound', `no model ${namespace}/${name} on this node`);
  }
  return events;
}
