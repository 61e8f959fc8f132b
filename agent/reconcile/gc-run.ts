import { resolveTarget } from '../../shared/index.js';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import type { Config } from '../config/schema.js';
import type { BlobStore } from '../fetch/blob-store.js';
import { dirSize, planGc, type GcPlan, type VersionRef } from '../install/gc.js';
import { readCurrent, removeVersionDir } from '../install/layout.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import type { ServingPort } from './serving-port.js';
import { specHash } from './spec-hash.js';

// The glue around the pure planGc: gather what is on disk and what must stay, plan, remove.
// Protected (never removed): every model's `current`, serving, previous (the rollback version),
// held and running version, and its spec's target. Wanted blobs: every desired spec's target
// digest (and a held version's), so an install in progress never loses its archive.

export interface GcDeps {
  config: Config;
  paths: StatePaths;
  store: Store;
  blobStore: BlobStore;
  log: Logger;
  serving?: Pick<ServingPort, 'state'>;
}

export interface GcResult extends GcPlan {
  dryRun: boolean;
  capBytes: number;
  totalBefore: number;
  protectedVersions: VersionRef[];
}

/** One gc at a time per store (the runner after a switch, the CLI): keyed by the store, not one lock for the process. */
const gcs = new KeyedMutex<Store>();

export interface GcOptions {
  dryRun?: boolean;
  /** Default config.store.capBytes: remove only what it takes to get under it. */
  capBytes?: number;
  /**
   * `modeld gc --all`: remove every unprotected version and every archive nothing needs, but keep
   * the archives of protected versions (so verify can still repair them without a download).
   */
  all?: boolean;
}

export function runGc(deps: GcDeps, opts: GcOptions = {}): Promise<GcResult> {
  return gcs.run(deps.store, () => gcOnce(deps, opts));
}

async function gcOnce(deps: GcDeps, opts: GcOptions): Promise<GcResult> {
  const { store, paths, blobStore, serving } = deps;
  const dryRun = opts.dryRun ?? false;
  const capBytes = opts.all ? 0 : (opts.capBytes ?? deps.config.store.capBytes);

  const protectedVersions: VersionRef[] = [];
  const wantedBlobs: string[] = [];
  const keep = (namespace: string, name: string, version: string | undefined) => {
    if (version) protectedVersions.push({ namespace, name, version });
  };
  const models = new Map<string, { namespace: string; name: string }>();
  for (const m of [...store.specs.list(), ...store.models.list(), ...store.versions.list()]) models.set(`${m.namespace}/${m.name}`, m);
  for (const { namespace, name } of models.values()) {
    const model = store.models.get(namespace, name);
    const desired = store.specs.get(namespace, name);
    keep(namespace, name, await readCurrent(paths.modelDir(namespace, name)));
    keep(namespace, name, model?.servingVersion);
    keep(namespace, name, model?.previousVersion);
    // A hold ends when the spec changes: a stale one protects nothing.
    if (desired && model?.heldSpecHash === specHash(desired.spec)) keep(namespace, name, model.heldVersion);
    keep(namespace, name, serving?.state(namespace, name)?.version);
    if (desired && !desired.spec.image) {
      const target = resolveTarget(desired.spec);
      keep(namespace, name, target?.version);
      if (target?.sha256sum) wantedBlobs.push(target.sha256sum.toLowerCase());
      const held = model?.heldSpecHash === specHash(desired.spec) ? desired.spec.manifest?.find((e) => e.version === model?.heldVersion) : undefined;
      if (held?.sha256sum) wantedBlobs.push(held.sha256sum.toLowerCase());
    }
  }

  const versions = [];
  for (const v of store.versions.list()) {
    versions.push({ ...v, sizeBytes: await dirSize(paths.versionDir(v.namespace, v.name, v.version)) });
  }
  const blobs = store.blobs.list();
  const totalBefore = blobs.reduce((a, b) => a + b.size, 0) + versions.reduce((a, v) => a + v.sizeBytes, 0);
  let plan = planGc({ blobs, versions, protectedVersions, wantedBlobs, capBytes });
  if (opts.all) {
    plan = keepProtectedArchives(plan, versions, protectedVersions);
    plan.overCap = plan.totalAfter > deps.config.store.capBytes;
  }
  const result: GcResult = { ...plan, dryRun, capBytes: deps.config.store.capBytes, totalBefore, protectedVersions };
  if (dryRun || (!plan.removeVersions.length && !plan.removeBlobs.length)) return result;

  const log = deps.log.child({ part: 'gc' });
  for (const v of plan.removeVersions) {
    // removeVersionDir refuses the version `current` points at: a last guard if the disk moved on.
    await removeVersionDir(paths.versionDir(v.namespace, v.name, v.version));
    store.versions.delete(v.namespace, v.name, v.version);
    log.info({ model: `${v.namespace}/${v.name}`, version: v.version, bytes: v.bytes }, 'gc removed version');
  }
  for (const b of plan.removeBlobs) {
    await blobStore.remove(b.sha256);
    log.info({ sha256: b.sha256, bytes: b.bytes }, 'gc removed blob');
  }
  if (plan.overCap) log.warn({ totalAfter: plan.totalAfter, capBytes: result.capBytes }, 'store is over store.capBytes with only protected content left');
  store.events.add({ kind: 'GC', message: `removed ${plan.removeVersions.length} versions and ${plan.removeBlobs.length} blobs, ${plan.freedBytes} bytes freed` });
  return result;
}

/** Drops from the plan the archives of versions that stay and are protected (planGc's last resort under a cap). */
function keepProtectedArchives(plan: GcPlan, versions: Array<VersionRef & { sha256?: string }>, protectedVersions: VersionRef[]): GcPlan {
  const key = (v: VersionRef) => `${v.namespace}\0${v.name}\0${v.version}`;
  const prot = new Set(protectedVersions.map(key));
  const needed = new Set(versions.filter((v) => prot.has(key(v)) && v.sha256).map((v) => v.sha256!.toLowerCase()));
  const kept = plan.removeBlobs.filter((b) => needed.has(b.sha256.toLowerCase()));
  const back = kept.reduce((a, b) => a + b.bytes, 0);
  return {
    ...plan,
    removeBlobs: plan.removeBlobs.filter((b) => !needed.has(b.sha256.toLowerCase())),
    freedBytes: plan.freedBytes - back,
    totalAfter: plan.totalAfter + back,
  };
}
