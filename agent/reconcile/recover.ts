import { recoverInstallState } from '../install/recover.js';
import { readMarker } from '../install/marker.js';
import { removeVersionDir } from '../install/layout.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';

/**
 * At start, before anything runs: clean what a crash left on disk, then make the versions table
 * agree with the disk (the disk is the truth: a version is installed when its complete directory
 * is there). Rows for missing directories go; complete directories without a row get one.
 */
export async function recoverState(paths: StatePaths, store: Store, log: Logger): Promise<void> {
  const report = await recoverInstallState(paths);
  for (const v of report.incompleteVersions) {
    await removeVersionDir(v.path);
    log.warn({ model: `${v.namespace}/${v.name}`, version: v.version }, 'removed an incomplete version left by a crash');
  }
  for (const link of report.removedTmpLinks) log.info({ link }, 'removed a link left by an interrupted switch');
  for (const b of report.brokenCurrent) log.error({ model: `${b.namespace}/${b.name}`, target: b.target }, '`current` points at a missing version');

  const complete = new Set(report.completeVersions.map((v) => `${v.namespace}/${v.name}/${v.version}`));
  for (const row of store.versions.list()) {
    if (!complete.has(`${row.namespace}/${row.name}/${row.version}`)) store.versions.delete(row.namespace, row.name, row.version);
  }
  for (const v of report.completeVersions) {
    if (store.versions.get(v.namespace, v.name, v.version)) continue;
    const marker = await readMarker(paths.versionDir(v.namespace, v.name, v.version));
    store.versions.put({ namespace: v.namespace, name: v.name, version: v.version, sha256: marker?.sha256 });
  }
}
