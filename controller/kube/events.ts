import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, KIND } from '../../shared/index.js';
import { isStatus, type KubeRest } from './rest.js';
import type { KubeObject } from './types.js';

// Kubernetes Events, written as events.k8s.io/v1 (client-go's tools/events recorder): `regarding`
// the object, `note`, `action`, `reportingController` and `reportingInstance`, `eventTime` in
// microseconds, in the object's namespace ("default" for cluster-scoped objects such as a Node,
// where kubelet's node events live too). The API server stores one Event and serves it as core/v1
// too, which is what `kubectl describe` and `kubectl events` read (regarding -> involvedObject,
// note -> message, reportingController -> reportingComponent).
//
// Like client-go's EventCorrelator, the same (object, reason, key) is not written again within ten
// minutes, and one (object, reason) writes at most MAX_SIMILAR distinct events per ten minutes
// (a thousand nodes failing at once is one line of Events per node for ten of them, then a count);
// a caller whose keys are few by construction (a rollout's steps) opts out of that cap.

const SAME_EVENT_MS = 10 * 60_000;
const MAX_SIMILAR = 10;
/** events.k8s.io/v1 validation: note at most 1 kB, reason and action 128 characters. */
const NOTE_MAX = 1024;

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

/** What an Event about an InferenceModel is `regarding` (uid included: a recreated one is another object). */
export function modelReference(model: KubeObject): InvolvedObject {
  const { name, namespace, uid } = model.metadata;
  return { apiVersion: model.apiVersion ?? `${API_GROUP}/${API_VERSION}`, kind: KIND, name, namespace, uid };
}

export interface EventOptions {
  /** What the controller did or saw (events.k8s.io `action`), e.g. Rollout, Report, Connect. */
  action?: string;
  /** Tells apart events of one reason on one object (e.g. the node name); default the message. */
  key?: string;
  /**
   * false: the caller already bounds its distinct keys (a rollout writes a line per step, and a
   * long rollout has more than ten batches), so no per-reason cap. Default true.
   */
  capSimilar?: boolean;
  /**
   * The Event's name comes from (object uid, reason, key) instead of a random suffix, so the same
   * step written again by another controller (a new leader whose status.rollout lagged behind the
   * old one's last Event) is refused by the API server as AlreadyExists and stored once.
   */
  once?: boolean;
}

export class EventRecorder {
  private readonly last = new Map<string, number>();
  private readonly similar = new Map<string, { since: number; keys: number; dropped: number }>();
  private readonly instance: string;

  constructor(
    private readonly deps: { rest: KubeRest; log: Logger; component: string; instance?: string; now?: () => number },
  ) {
    this.instance = (deps.instance ?? `${deps.component}-${hostname()}`).slice(0, 128);
  }

  /** Best effort: a failed write is logged, never thrown. */
  warning(object: InvolvedObject, reason: string, message: string, opts: EventOptions = {}): Promise<void> {
    return this.record('Warning', object, reason, message, opts);
  }

  /** A step worth a line in `kubectl describe` (a rollout batch started, a rollout resumed). */
  normal(object: InvolvedObject, reason: string, message: string, opts: EventOptions = {}): Promise<void> {
    return this.record('Normal', object, reason, message, opts);
  }

  private async record(type: 'Normal' | 'Warning', object: InvolvedObject, reason: string, message: string, opts: EventOptions): Promise<void> {
    const now = this.deps.now?.() ?? Date.now();
    const group = `${object.kind}/${object.namespace ?? ''}/${object.name}/${reason}`;
    const key = `${group}/${opts.key ?? message}`;
    if (now - (this.last.get(key) ?? -Infinity) < SAME_EVENT_MS) return;
    let s = this.similar.get(group);
    if (!s || now - s.since >= SAME_EVENT_MS) {
      if (s?.dropped) this.deps.log.warn({ object: group, dropped: s.dropped }, 'similar Events not written (more than 10 in ten minutes)');
      this.similar.set(group, (s = { since: now, keys: 0, dropped: 0 }));
    }
    if (s.keys >= MAX_SIMILAR && opts.capSimilar !== false) {
      s.dropped++;
      return;
    }
    s.keys++;
    this.last.set(key, now);
    if (this.last.size > 10_000) this.last.delete(this.last.keys().next().value as string);
    const namespace = object.namespace ?? 'default';
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${object.name}.${opts.once ? createHash('sha256').update(`${object.uid ?? ''}/${reason}/${opts.key ?? message}`).digest('hex').slice(0, 16) : randomBytes(8).toString('hex')}`, namespace },
      eventTime: new Date(now).toISOString().replace(/Z$/, '000Z'),
      reportingController: this.deps.component,
      reportingInstance: this.instance,
      action: (opts.action ?? (type === 'Warning' ? 'Observe' : 'Update')).slice(0, 128),
      reason: reason.slice(0, 128),
      type,
      note: message.length > NOTE_MAX ? `${message.slice(0, NOTE_MAX - 3)}...` : message,
      regarding: object,
    };
    try {
      await this.deps.rest.request('POST', `/apis/events.k8s.io/v1/namespaces/${namespace}/events`, { body: event });
    } catch (err) {
      if (opts.once && isStatus(err, 409)) return void this.deps.log.debug({ reason, object: group }, 'Event already written (by an earlier leader)');
      this.deps.log.warn({ err: (err as Error).message, reason, object: group }, 'could not record an Event');
    }
  }
}
