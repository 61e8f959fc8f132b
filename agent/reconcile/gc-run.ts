import { KeyedMutex } from '../../shared/keyed-mutex.js';
import type { Config } from '../config/schema.js';
import type { BlobStore } from '../fetch/blob-store.js';
import { dirSize, planGc, type GcPlan, type VersionRef } from '../install/gc.js';
import { removeTreeDir } from '../install/layout.js';
import { describeTree, toTree } from '../install/tree-ref.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import { gatherPlanInput } from './gather.js';
import { keepTrees } from './plan.js';
import type { ServingPort } from './serving-port.js';

// The glue around the pure planGc: gather what is on disk and what must stay, plan, remove.
// Protected (never removed): every tree the planner keeps for its model (keepTrees: `current`,
// serving, previous — the rollback tree —, a hold in force, running, the target). Wanted blobs:
// the archives of the kept trees, so an install in progress never loses its archive.

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
  const { store, paths, blobStore } = deps;
  const dryRun = opts.dryRun ?? false;
  const capBytes = opts.all ? 0 : (opts.capBytes ?? deps.config.store.capBytes);

  const protectedVersions: VersionRef[] = [];
  const wantedBlobs: string[] = [];
  const models = new Map<string, { namespace: string; name: string }>();
  for (const m of [...store.specs.list(), ...store.models.list(), ...store.versions.list()]) models.set(`${m.namespace}/${m.name}`, m);
  for (const { namespace, name } of models.values()) {
    const { input } = await gatherPlanInput(deps, namespace, name);
    for (const tree of keepTrees(input)) {
      // Each tree once, however many reasons keep it (current, serving, target...).
      if (protectedVersions.some((p) => p.namespace === namespace && p.name === name && p.version === tree.version && p.sha256 === tree.sha256)) continue;
      protectedVersions.push({ namespace, name, ...tree });
      if (tree.sha256) wantedBlobs.push(tree.sha256);
    }
  }

  const versions = [];
  for (const v of store.versions.list()) {
    versions.push({ ...v, sizeBytes: await dirSize(paths.treeDir(v.namespace, v.name, toTree(v.version, v.sha256)!)) });
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
    // removeTreeDir refuses the tree `current` points at: a last guard if the disk moved on.
    const tree = toTree(v.version, v.sha256)!;
    await removeTreeDir(paths.treeDir(v.namespace, v.name, tree));
    store.versions.delete(v.namespace, v.name, tree);
    log.info({ model: `${v.namespace}/${v.name}`, version: describeTree(tree), bytes: v.bytes }, 'gc removed version');
  }
  for (const b of plan.removeBlobs) {
    await blobStore.remove(b.sha256);
    log.info({ sha256: b.sha256, bytes: b.bytes }, 'gc removed blob');
  }
  if (plan.overCap) log.warn({ totalAfter: plan.totalAfter, capBytes: result.capBytes }, 'store is over store.capBytes with only protected content left');
  store.events.add({ kind: 'GC', message: `removed ${count(plan.removeVersions.length, 'version')} and ${count(plan.removeBlobs.length, 'archive')}, ${plan.freedBytes} bytes freed` });
  return result;
}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** Drops from the plan the archives of versions that stay and are protected (planGc's last resort under a cap). */
function keepProtectedArchives(plan: GcPlan, versions: Array<VersionRef & { sha256?: string }>, protectedVersions: VersionRef[]): GcPlan {
  const key = (v: VersionRef) => `${v.namespace}\0${v.name}\0${v.version}\0${v.sha256 ?? ''}`;
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
