import { join } from 'node:path';
import { treeName, type TreeRef } from './install/tree-ref.js';

/** The state directory's layout (DESIGN.md), in one place. */
export interface StatePaths {
  root: string;
  db: string;
  blobsDir: string;
  partialDir: string;
  stagingDir: string;
  modelsDir: string;
  runDir: string;
  lockFile: string;
  blob(sha256: string): string;
  partial(key: string): string;
  modelDir(namespace: string, name: string): string;
  versionsDir(namespace: string, name: string): string;
  /** versions/<version>@<sha256>/: one installed tree (tree-ref.ts). */
  treeDir(namespace: string, name: string, tree: TreeRef): string;
  current(namespace: string, name: string): string;
}

export function statePaths(root: string): StatePaths {
  const blobsDir = join(root, 'blobs', 'sha256');
  const partialDir = join(root, 'blobs', 'partial');
  const modelsDir = join(root, 'models');
  const modelDir = (ns: string, name: string) => join(modelsDir, ns, name);
  return {
    root,
    db: join(root, 'state.db'),
    blobsDir,
    partialDir,
    stagingDir: join(root, 'staging'),
    modelsDir,
    runDir: join(root, 'run'),
    lockFile: join(root, 'modeld.lock'),
    blob: (sha256) => join(blobsDir, sha256.slice(0, 2).toLowerCase(), sha256.slice(2).toLowerCase()),
    partial: (key) => join(partialDir, key),
    modelDir,
    versionsDir: (ns, name) => join(modelDir(ns, name), 'versions'),
    treeDir: (ns, name, tree) => join(modelDir(ns, name), 'versions', treeName(tree)),
    current: (ns, name) => join(modelDir(ns, name), 'current'),
  };
}
