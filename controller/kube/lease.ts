import type { Logger } from 'pino';
import { sleep } from '../../shared/sleep.js';
import { isStatus, type KubeRest } from './rest.js';

// Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it:
// take the Lease when it is free or its holder has not renewed within leaseDurationSeconds,
// renew every retryPeriod, and give up leadership when renewals fail for renewDeadline.
// Writes carry the resourceVersion read, so two candidates cannot both win (409 for the loser).

export interface LeaseOptions {
  rest: KubeRest;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSec?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  now?: () => Date;
}

interface Lease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

const micro = (d: Date) => d.toISOString().replace('Z', '000Z'); // MicroTime: RFC 3339 with microseconds

export class LeaderElector {
  private readonly path: string;
  private readonly duration: number;
  private readonly renewDeadline: number;
  private readonly retry: number;
  private leading = false;

  constructor(private readonly opts: LeaseOptions) {
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${opts.namespace}/leases`;
    this.duration = opts.leaseDurationSec ?? 15;
    this.renewDeadline = opts.renewDeadlineMs ?? 10_000;
    this.retry = opts.retryPeriodMs ?? 2_000;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** One attempt to take or renew the Lease; true when we hold it afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const now = (this.opts.now ?? (() => new Date()))();
    let lease: Lease | undefined;
    try {
      lease = await this.opts.rest.request<Lease>('GET', `${this.path}/${this.opts.name}`);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    if (!lease) {
      const created: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.opts.name, namespace: this.opts.namespace },
        spec: { holderIdentity: this.opts.identity, leaseDurationSeconds: this.duration, acquireTime: micro(now), renewTime: micro(now), leaseTransitions: 0 },
      };
      try {
        await this.opts.rest.request('POST', this.path, { body: created });
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    const s = lease.spec;
    const mine = s.holderIdentity === this.opts.identity;
    const renewed = s.renewTime ? Date.parse(s.renewTime) : 0;
    const expired = !s.holderIdentity || renewed + (s.leaseDurationSeconds ?? this.duration) * 1000 < now.getTime();
    if (!mine && !expired) return false;
    const spec = mine
      ? { ...s, renewTime: micro(now), leaseDurationSeconds: this.duration }
      : { ...s, holderIdentity: this.opts.identity, acquireTime: micro(now), renewTime: micro(now), leaseDurationSeconds: this.duration, leaseTransitions: (s.leaseTransitions ?? 0) + 1 };
    try {
      await this.opts.rest.request('PUT', `${this.path}/${this.opts.name}`, { body: { ...lease, spec } });
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }

  /**
   * Waits until this process leads, then keeps renewing; resolves when leadership is lost or the
   * signal aborts. `onLeading` runs once leadership is taken.
   */
  async run(signal: AbortSignal, onLeading: () => void): Promise<'lost' | 'aborted'> {
    while (!signal.aborted && !this.leading) {
      try {
        if (await this.tryAcquireOrRenew()) {
          this.leading = true;
          this.opts.log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity }, 'became leader');
          onLeading();
          break;
        }
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'lease acquire failed');
      }
      await sleep(this.retry, signal);
    }
    let lastRenew = Date.now();
    while (!signal.aborted) {
      await sleep(this.retry, signal);
      if (signal.aborted) break;
      try {
        if (await this.tryAcquireOrRenew()) {
          lastRenew = Date.now();
          continue;
        }
        this.opts.log.error('lease taken by another replica');
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'lease renew failed');
        if (Date.now() - lastRenew < this.renewDeadline) continue;
      }
      this.leading = false;
      return 'lost';
    }
    return 'aborted';
  }

  /** Gives the Lease up at shutdown so a standby takes over at once. */
  async release(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.opts.rest.request<Lease>('GET', `${this.path}/${this.opts.name}`);
      if (lease.spec.holderIdentity !== this.opts.identity) return;
      await this.opts.rest.request('PUT', `${this.path}/${this.opts.name}`, {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: '', renewTime: micro(new Date()), leaseDurationSeconds: 1 } },
      });
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'lease release failed');
    }
  }
}
