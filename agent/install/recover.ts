// At agent start: undo what a crash mid-install can leave on disk, and report what the caller
// must decide about (tree directories without the completion marker, a dangling `current`).
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { StatePaths } from '../paths.js';
import { CURRENT_TMP_PREFIX, PARTIAL_PREFIX, TRASH_PREFIX, clearStaging, readCurrent } from './layout.js';
import { isVersionComplete } from './marker.js';
import { rmTree } from './rm-tree.js';
import { parseTreeName, sameTree, treeName, type TreeRef } from './tree-ref.js';

export interface ModelRef {
  namespace: string;
  name: string;
}

export interface RecoveryReport {
  /** `current.tmp-*` links of an interrupted swap, removed. */
  removedTmpLinks: string[];
  /** `versions/.trash-*` of an interrupted removal and `versions/.partial-*` of an interrupted layout migration, removed. */
  removedTrash: string[];
  /** Trees without the completion marker: debris, never pointed at; the caller deletes them. */
  incompleteTrees: Array<ModelRef & { tree: TreeRef; path: string }>;
  /** `current` pointing at a tree that is missing or incomplete (only by outside tampering). */
  brokenCurrent: Array<ModelRef & { target: string }>;
  /** Every complete tree found, for reconciling the store with the disk. */
  completeTrees: Array<ModelRef & { tree: TreeRef; current: boolean }>;
  /** Directories under versions/ that are not named as trees: not ours, left alone. */
  foreign: string[];
}

async function dirs(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

export async function recoverInstallState(paths: StatePaths): Promise<RecoveryReport> {
  const report: RecoveryReport = { removedTmpLinks: [], removedTrash: [], incompleteTrees: [], brokenCurrent: [], completeTrees: [], foreign: [] };
  await clearStaging(paths.stagingDir);
  for (const namespace of await dirs(paths.modelsDir)) {
    for (const name of await dirs(join(paths.modelsDir, namespace))) {
      const modelDir = paths.modelDir(namespace, name);
      for (const entry of await readdir(modelDir)) {
        if (!entry.startsWith(CURRENT_TMP_PREFIX)) continue;
        await unlink(join(modelDir, entry));
        report.removedTmpLinks.push(join(modelDir, entry));
      }
      const current = await readCurrent(modelDir);
      const versionsDir = paths.versionsDir(namespace, name);
      for (const entry of await dirs(versionsDir)) {
        const path = join(versionsDir, entry);
        const tree = parseTreeName(entry);
        if (entry.startsWith(TRASH_PREFIX) || entry.startsWith(PARTIAL_PREFIX)) {
          await rmTree(path);
          report.removedTrash.push(path);
        } else if (!tree) {
          report.foreign.push(path);
        } else if (await isVersionComplete(path)) {
          report.completeTrees.push({ namespace, name, tree, current: sameTree(tree, current) });
        } else {
          report.incompleteTrees.push({ namespace, name, tree, path });
        }
      }
      const linkExists = (await lstat(paths.current(namespace, name)).catch(() => undefined))?.isSymbolicLink();
      if (linkExists && !report.completeTrees.some((v) => v.namespace === namespace && v.name === name && v.current)) {
        report.brokenCurrent.push({ namespace, name, target: current ? treeName(current) : '(not a versions/ link)' });
      }
    }
  }
  return report;
}
