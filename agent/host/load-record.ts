import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { DiedLoading, RouteSpec } from './protocol.js';
import { routeKey } from './protocol.js';

// What the host is loading, on disk before each load starts. onnxruntime's load is native code: a
// model that crashes it (a segfault, an abort, the OOM killer) takes the whole host down, and a
// host that restored that model again at every restart would take every model down in a loop.
// A host that starts and finds this record left by its predecessor knows which loads it died in.
//
// The record is written synchronously (write + rename): a process that dies leaves the page cache
// intact, so no fsync is needed. A machine that rebooted in between (a power cut during a load)
// is not the model's fault: the record holds the kernel's boot id and is ignored after a reboot.

const KERNEL_BOOT_ID = '/proc/sys/kernel/random/boot_id';

export function kernelBootId(): string {
  try {
    return readFileSync(KERNEL_BOOT_ID, 'utf8').trim();
  } catch {
    return '';
  }
}

interface LoadingFile {
  pid: number;
  kernelBootId: string;
  loads: Array<Pick<RouteSpec, 'namespace' | 'name' | 'version' | 'sha256' | 'versionDir'> & { startedAt: string }>;
}

export class LoadRecord {
  private readonly loads = new Map<string, { spec: RouteSpec; n: number; startedAt: string }>();

  constructor(
    private readonly file: string,
    private readonly boot = kernelBootId(),
  ) {}

  /**
   * The loads the previous host was in when it died (empty after a clean stop, or after a reboot),
   * and the record cleared for this host.
   */
  takePrevious(): { pid: number; loads: LoadingFile['loads'] } | undefined {
    let prev: LoadingFile | undefined;
    try {
      prev = JSON.parse(readFileSync(this.file, 'utf8')) as LoadingFile;
    } catch {
      /* none, or unreadable: nothing to guard */
    }
    if (!prev || !Array.isArray(prev.loads) || prev.loads.length === 0) return undefined;
    if (prev.kernelBootId !== this.boot) return undefined;
    return { pid: prev.pid, loads: prev.loads.filter((l) => typeof l?.namespace === 'string' && typeof l.name === 'string' && typeof l.version === 'string') };
  }

  /** Writes the record, then returns: call before the load begins. */
  begin(spec: RouteSpec): void {
    const k = identity(spec);
    const cur = this.loads.get(k);
    if (cur) cur.n++;
    else this.loads.set(k, { spec, n: 1, startedAt: new Date().toISOString() });
    this.write();
  }

  end(spec: RouteSpec): void {
    const k = identity(spec);
    const cur = this.loads.get(k);
    if (!cur) return;
    if (--cur.n > 0) return;
    this.loads.delete(k);
    this.write();
  }

  /** A clean stop: nothing was under way. */
  clear(): void {
    this.loads.clear();
    rmSync(this.file, { force: true });
  }

  private write() {
    const body: LoadingFile = {
      pid: process.pid,
      kernelBootId: this.boot,
      loads: [...this.loads.values()].map(({ spec: s, startedAt }) => ({ namespace: s.namespace, name: s.name, version: s.version, ...(s.sha256 ? { sha256: s.sha256 } : {}), versionDir: s.versionDir, startedAt })),
    };
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(body));
    renameSync(tmp, this.file);
  }
}

const identity = (s: Pick<RouteSpec, 'namespace' | 'name' | 'version' | 'sha256' | 'versionDir'>) => `${routeKey(s.namespace, s.name)}\0${s.version}\0${s.sha256 ?? ''}\0${s.versionDir}`;

/** Is `spec` the version recorded in `d` (same model, version, digest and tree)? */
export const sameLoad = (d: DiedLoading, spec: Pick<RouteSpec, 'namespace' | 'name' | 'version' | 'sha256' | 'versionDir'>) => identity(d) === identity(spec);
