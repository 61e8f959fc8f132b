import { existsSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import type { BlobStore } from '../fetch/blob-store.js';
import { readCurrent } from '../install/layout.js';
import { toTree, type TreeRef } from '../install/tree-ref.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import type { PlanInput } from './plan.js';
import type { ServingPort } from './serving-port.js';
import { specHash } from './spec-hash.js';

// What the planner looks at for one model, read from SQLite, the disk and the serving layer.
// The runner plans from it; gc asks the planner, from the same facts, which trees to keep.

export interface GatherDeps {
  config: Pick<Config, 'allowUnverified'>;
  paths: StatePaths;
  store: Pick<Store, 'specs' | 'models' | 'versions'>;
  blobStore: Pick<BlobStore, 'has'>;
  serving?: Pick<ServingPort, 'state'>;
}

export async function gatherPlanInput(
  deps: GatherDeps,
  namespace: string,
  name: string,
  run: { restoreFailed?: boolean; learnt?: ReadonlyMap<string, string> } = {},
): Promise<{ input: PlanInput; hash?: string }> {
  const { store, paths, serving, config } = deps;
  const desired = store.specs.get(namespace, name);
  const model = store.models.get(namespace, name);
  const hash = desired ? specHash(desired.spec) : undefined;
  // The disk is the truth: a row whose tree is gone is not installed.
  const installed: TreeRef[] = store.versions
    .listFor(namespace, name)
    .map((v) => toTree(v.version, v.sha256)!)
    .filter((tree) => existsSync(paths.treeDir(namespace, name, tree)));
  // An unverified entry's digest is what its download turned out to hash to (in this run).
  const learnt = Object.fromEntries(
    (desired?.spec.manifest ?? []).flatMap((m) => (!m.sha256sum && run.learnt?.has(m.downloadURL) ? [[m.downloadURL, run.learnt.get(m.downloadURL)!]] : [])),
  );
  const blobs = (desired?.spec.manifest ?? [])
    .map((m) => m.sha256sum?.toLowerCase() ?? learnt[m.downloadURL])
    .filter((s): s is string => !!s && deps.blobStore.has(s));
  const running = serving?.state(namespace, name);
  const input: PlanInput = {
    desired: desired && { spec: desired.spec, specHash: hash!, generation: desired.generation },
    actual: {
      current: await readCurrent(paths.modelDir(namespace, name)),
      serving: toTree(model?.servingVersion, model?.servingSha256),
      previous: toTree(model?.previousVersion, model?.previousSha256),
      failed: toTree(model?.failedVersion, model?.failedSha256),
      failedSpecHash: model?.failedSpecHash,
      held: toTree(model?.heldVersion, model?.heldSha256),
      heldSpecHash: model?.heldSpecHash,
      installed,
      blobs,
      learnt,
      running: running && { tree: toTree(running.version, running.sha256)!, replicas: running.replicas },
      servingEnabled: serving !== undefined,
      present: model !== undefined || existsSync(paths.modelDir(namespace, name)),
      restoreFailed: run.restoreFailed,
      gcDue: model?.gcDue,
      deferred: model?.deferredUntil !== undefined && model.deferredUntil > Date.now(),
    },
    allowUnverified: config.allowUnverified,
  };
  return { input, hash };
}
