import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeRest } from './rest.js';

// Kubernetes Events (core/v1), written the way client-go's EventRecorder does for an object:
// `<name>.<unique suffix>` in the object's namespace ("default" for cluster-scoped objects such
// as a Node, where kubelet's node events live too), with source.component set. Like client-go's
// EventCorrelator, the same (object, reason) is not written again within ten minutes.

const SAME_EVENT_MS = 10 * 60_000;

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

export class EventRecorder {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly deps: { rest: KubeRest; log: Logger; component: string; now?: () => number },
  ) {}

  /** Best effort: a failed write is logged, never thrown. */
  async warning(object: InvolvedObject, reason: string, message: string): Promise<void> {
    const now = this.deps.now?.() ?? Date.now();
    const key = `${object.kind}/${object.namespace ?? ''}/${object.name}/${reason}`;
    if (now - (this.last.get(key) ?? -Infinity) < SAME_EVENT_MS) return;
    this.last.set(key, now);
    const namespace = object.namespace ?? 'default';
    const time = new Date(now).toISOString();
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${object.name}.${randomBytes(8).toString('hex')}`, namespace },
      involvedObject: object,
      reason,
      message,
      type: 'Warning',
      source: { component: this.deps.component },
      firstTimestamp: time,
      lastTimestamp: time,
      count: 1,
    };
    try {
      await this.deps.rest.request('POST', `/api/v1/namespaces/${namespace}/events`, { body: event });
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, reason, object: key }, 'could not record an Event');
    }
  }
}
