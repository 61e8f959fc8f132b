// At agent start: undo what a crash mid-install can leave on disk, and report what the caller
// must decide about (version directories without the completion marker, a dangling `current`).
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { StatePaths } from '../paths.js';
import { CURRENT_TMP_PREFIX, TRASH_PREFIX, clearStaging, readCurrent } from './layout.js';
import { isVersionComplete } from './marker.js';
import { rmTree } from './rm-tree.js';

export interface ModelRef {
  namespace: string;
  name: string;
}

export interface RecoveryReport {
  /** `current.tmp-*` links of an interrupted swap, removed. */
  removedTmpLinks: string[];
  /** `versions/.trash-*` of an interrupted removal, removed. */
  removedTrash: string[];
  /** versions/<v> without the completion marker: debris, never pointed at; the caller deletes them. */
  incompleteVersions: Array<ModelRef & { version: string; path: string }>;
  /** `current` pointing at a version that is missing or incomplete (only by outside tampering). */
  brokenCurrent: Array<ModelRef & { target: string }>;
  /** Every complete version found, for reconciling the store with the disk. */
  completeVersions: Array<ModelRef & { version: string; current: boolean }>;
}

async function dirs(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

export async function recoverInstallState(paths: StatePaths): Promise<RecoveryReport> {
  const report: RecoveryReport = { removedTmpLinks: [], removedTrash: [], incompleteVersions: [], brokenCurrent: [], completeVersions: [] };
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
      for (const version of await dirs(versionsDir)) {
        const path = join(versionsDir, version);
        if (version.startsWith(TRASH_PREFIX)) {
          await rmTree(path);
          report.removedTrash.push(path);
        } else if (await isVersionComplete(path)) {
          report.completeVersions.push({ namespace, name, version, current: version === current });
        } else {
          report.incompleteVersions.push({ namespace, name, version, path });
        }
      }
      const linkExists = (await lstat(paths.current(namespace, name)).catch(() => undefined))?.isSymbolicLink();
      if (linkExists && !(current && report.completeVersions.some((v) => v.namespace === namespace && v.name === name && v.version === current))) {
        report.brokenCurrent.push({ namespace, name, target: current ?? '(not a versions/ link)' });
      }
    }
  }
  return report;
}
