// At agent start: move trees of the old layout, versions/<version>/, to versions/<version>@<sha256>/
// (tree-ref.ts), and `current` with them. The digest comes from the tree's completion marker, or
// else from what the versions table recorded; a tree with neither keeps its old name (the planner
// treats it as a tree of unknown bytes: it never counts as what a spec with a digest names).
//
// Crash-safe at every instant (kill -9, power cut) and idempotent, so the next start finishes it:
//   1. build the new tree beside the old one under a `.partial-` name, every file a hard link to the
//      old tree's file (no bytes copied, no extra space), the completion marker last; fsync; rename
//      it to its new name — the new tree exists complete or not at all (recovery removes `.partial-`);
//   2. swap `current` to the new tree (one atomic rename of a link): before it `current` names the
//      complete old tree, after it the complete new one, which holds the same inodes;
//   3. remove the old tree (renamed to `.trash-` first, as every removal).
// A directory cannot be renamed while a link keeps pointing at its old name, which is why the
// new tree is built beside the old one rather than the old one renamed.
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, link, lstat, mkdir, readdir, readlink, rename, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncPath, fsyncTree } from '../durable.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { PARTIAL_PREFIX, readCurrent, removeTreeDir, swapCurrent } from './layout.js';
import { COMPLETE_MARKER, isVersionComplete, readMarker } from './marker.js';
import { rmTree } from './rm-tree.js';
import { parseTreeName, treeName, type TreeRef } from './tree-ref.js';

export interface LayoutMigrationDeps {
  /** The digest the versions table recorded for an old tree, when its marker has none. */
  recordedDigest(namespace: string, name: string, version: string): string | undefined;
  log: Logger;
  /** Told before each change on disk (the crash test stops the process there, as a kill -9 would). */
  beforeChange?: (what: string) => void | Promise<void>;
}

export interface LayoutMigrationReport {
  migrated: Array<{ namespace: string; name: string; tree: Required<TreeRef>; current: boolean }>;
  /** Old trees with no digest anywhere: left as they are. */
  untracked: Array<{ namespace: string; name: string; version: string }>;
}

const SHA256 = /^[0-9a-f]{64}$/;

async function dirNames(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

export async function migrateLegacyTrees(paths: StatePaths, deps: LayoutMigrationDeps): Promise<LayoutMigrationReport> {
  const report: LayoutMigrationReport = { migrated: [], untracked: [] };
  const step = async (what: string) => deps.beforeChange?.(what);
  for (const namespace of await dirNames(paths.modelsDir)) {
    for (const name of await dirNames(join(paths.modelsDir, namespace))) {
      const modelDir = paths.modelDir(namespace, name);
      const versionsDir = paths.versionsDir(namespace, name);
      for (const entry of await dirNames(versionsDir)) {
        const legacy = parseTreeName(entry);
        if (!legacy || legacy.sha256) continue; // already new, or not a tree (trash, partial)
        const oldDir = join(versionsDir, entry);
        const marker = await readMarker(oldDir);
        if (!marker) continue; // incomplete: debris that recovery removes
        const sha256 = (marker.sha256 ?? deps.recordedDigest(namespace, name, legacy.version))?.toLowerCase();
        if (!sha256 || !SHA256.test(sha256)) {
          report.untracked.push({ namespace, name, version: legacy.version });
          deps.log.warn({ model: `${namespace}/${name}`, version: legacy.version }, 'an installed version with no recorded digest keeps its old directory name');
          continue;
        }
        const tree = { version: legacy.version, sha256 };
        const newDir = join(versionsDir, treeName(tree));
        if (!(await isVersionComplete(newDir))) {
          if ((await lstat(newDir).catch(() => undefined)) !== undefined) {
            await step(`remove incomplete ${treeName(tree)}`);
            await rmTree(newDir);
          }
          const partial = join(versionsDir, `${PARTIAL_PREFIX}${treeName(tree)}-${randomBytes(4).toString('hex')}`);
          await linkTree(oldDir, partial, step);
          await fsyncTree(partial);
          await step(`rename ${treeName(tree)} into place`);
          await rename(partial, newDir);
          await chmod(newDir, 0o555);
          await fsyncPath(versionsDir);
        }
        const pointed = await readCurrent(modelDir);
        const current = pointed !== undefined && pointed.version === legacy.version && pointed.sha256 === undefined;
        if (current) {
          await step(`point current at ${treeName(tree)}`);
          await swapCurrent(modelDir, tree);
        }
        await step(`remove old ${entry}`);
        await removeTreeDir(oldDir);
        report.migrated.push({ namespace, name, tree, current });
        deps.log.info({ model: `${namespace}/${name}`, version: legacy.version, sha256, current }, 'moved an installed version to the digest-keyed layout');
      }
    }
  }
  return report;
}

/**
 * A copy of the tree at `from` whose files are hard links to its files (same inodes: no bytes
 * copied; a copy only where the filesystem refuses links). Modes follow the original; the
 * completion marker goes in last, so the copy is complete only once everything else is there.
 */
async function linkTree(from: string, to: string, step: (what: string) => Promise<void>): Promise<void> {
  const walk = async (src: string, dst: string, isRoot: boolean) => {
    await step(`mkdir ${dst}`);
    await mkdir(dst);
    const names = (await readdir(src)).sort();
    const ordered = isRoot ? [...names.filter((n) => n !== COMPLETE_MARKER), ...names.filter((n) => n === COMPLETE_MARKER)] : names;
    for (const n of ordered) {
      const s = join(src, n);
      const d = join(dst, n);
      const st = await lstat(s);
      await step(`link ${d}`);
      if (st.isDirectory()) await walk(s, d, false);
      else if (st.isSymbolicLink()) await symlink(await readlink(s), d);
      else if (st.isFile()) await linkOrCopy(s, d);
      // Nothing else is ever installed (unpack refuses devices and FIFOs).
    }
    if (!isRoot) await chmod(dst, (await lstat(src)).mode & 0o7777);
  };
  await walk(from, to, true);
}

async function linkOrCopy(src: string, dst: string): Promise<void> {
  try {
    await link(src, dst);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK' && code !== 'EXDEV') throw err;
    await copyFile(src, dst);
    await chmod(dst, (await lstat(src)).mode & 0o7777);
  }
}
