import type { Pool } from 'undici';
import type { ProxyTarget, Upstream } from '../runtime/gateway.js';
import type { RouteSpec } from './protocol.js';

// A model version served by loopback instances the agent supervises (an external runtime, or an
// `isolation: process` built-in): the host proxies to the ports the agent says are ready.
//
// undici is loaded only when the host has such a route: it is ~7 MiB of the host's private
// memory (measured), and a node whose models are all sessions in the host never needs it.

let PoolClass: typeof Pool | undefined;

/** Loads undici; call before the first ProxyRoute is made. */
export async function loadProxying(): Promise<void> {
  PoolClass ??= (await import('undici')).Pool;
}

interface PortUpstream extends Upstream {
  port: number;
}

export class ProxyRoute implements ProxyTarget {
  readonly kind = 'proxy';
  private upstreams: PortUpstream[] = [];

  constructor(public spec: RouteSpec) {
    this.setPorts(spec.ports ?? []);
  }

  get namespace() {
    return this.spec.namespace;
  }
  get name() {
    return this.spec.name;
  }
  get modelName() {
    return this.spec.modelName;
  }
  get version() {
    return this.spec.version;
  }

  ready(): Upstream[] {
    return this.upstreams;
  }
  readyCount(): number {
    return this.upstreams.length;
  }
  shouldServe(): boolean {
    return this.spec.replicas > 0;
  }
  inFlight(): number {
    return this.upstreams.reduce((n, u) => n + u.inFlight, 0);
  }

  /** The ready instances changed (one restarted, scaled): one assignment, pools of gone ports closed. */
  setPorts(ports: number[]): void {
    const keep = new Map(this.upstreams.map((u) => [u.port, u]));
    if (!PoolClass) throw new Error('loadProxying() was not called before a proxy route');
    const Pool = PoolClass;
    const next = ports.map((port) => keep.get(port) ?? { port, inFlight: 0, pool: new Pool(`http://127.0.0.1:${port}`, { pipelining: 1, keepAliveTimeout: 30_000 }) });
    const gone = this.upstreams.filter((u) => !ports.includes(u.port));
    this.upstreams = next;
    this.spec = { ...this.spec, ports: [...ports] };
    for (const u of gone) void u.pool?.close().catch(() => {});
  }

  close(): void {
    const all = this.upstreams;
    this.upstreams = [];
    for (const u of all) void u.pool?.destroy().catch(() => {});
  }
}
