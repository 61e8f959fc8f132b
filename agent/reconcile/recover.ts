import { migrateLegacyTrees } from '../install/migrate-layout.js';
import { recoverInstallState } from '../install/recover.js';
import { removeTreeDir } from '../install/layout.js';
import { describeTree, sameTree, toTree, treeName, type TreeRef } from '../install/tree-ref.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';

/**
 * At start, before anything runs: move trees of the old layout to the digest-keyed one, clean
 * what a crash left on disk, then make the versions table agree with the disk (the disk is the
 * truth: a tree is installed when its complete directory is there). Rows for missing trees go;
 * complete trees without a row get one.
 */
export async function recoverState(paths: StatePaths, store: Store, log: Logger): Promise<void> {
  await migrateLegacyTrees(paths, {
    recordedDigest: (namespace, name, version) => store.versions.listFor(namespace, name).find((v) => v.version === version && v.sha256)?.sha256,
    log,
  });
  const report = await recoverInstallState(paths);
  for (const v of report.incompleteTrees) {
    await removeTreeDir(v.path);
    log.warn({ model: `${v.namespace}/${v.name}`, version: describeTree(v.tree) }, 'removed an incomplete version left by a crash');
  }
  for (const link of report.removedTmpLinks) log.info({ link }, 'removed a link left by an interrupted switch');
  for (const b of report.brokenCurrent) log.error({ model: `${b.namespace}/${b.name}`, target: b.target }, '`current` points at a missing version');
  for (const path of report.foreign) log.warn({ path }, 'a directory under versions/ that is not an installed version: left alone');

  const key = (namespace: string, name: string, tree: TreeRef) => `${namespace}/${name}/${treeName(tree)}`;
  const complete = new Set(report.completeTrees.map((v) => key(v.namespace, v.name, v.tree)));
  for (const row of store.versions.list()) {
    const tree = toTree(row.version, row.sha256)!;
    if (!complete.has(key(row.namespace, row.name, tree))) store.versions.delete(row.namespace, row.name, tree);
  }
  for (const v of report.completeTrees) {
    if (!store.versions.get(v.namespace, v.name, v.tree)) store.versions.put({ namespace: v.namespace, name: v.name, version: v.tree.version, sha256: v.tree.sha256 });
  }
  nameTreesOfOldRows(store, report.completeTrees);
}

/**
 * A models row written before digests were recorded names its serving, previous and held trees
 * by version only: give each the digest of the one complete tree of that version (the one the
 * migration moved), so rollback and status name exact bytes.
 */
function nameTreesOfOldRows(store: Store, trees: Array<{ namespace: string; name: string; tree: TreeRef }>): void {
  for (const m of store.models.list()) {
    const only = (version: string | undefined, sha256: string | undefined): string | undefined => {
      if (version === undefined || sha256) return sha256;
      const of = trees.filter((t) => t.namespace === m.namespace && t.name === m.name && t.tree.version === version);
      return of.length === 1 && !sameTree(of[0].tree, { version }) ? of[0].tree.sha256 : undefined;
    };
    const patch = {
      servingSha256: only(m.servingVersion, m.servingSha256),
      previousSha256: only(m.previousVersion, m.previousSha256),
      heldSha256: only(m.heldVersion, m.heldSha256),
    };
    if (patch.servingSha256 !== m.servingSha256 || patch.previousSha256 !== m.previousSha256 || patch.heldSha256 !== m.heldSha256) {
      store.models.update(m.namespace, m.name, patch);
    }
  }
}
