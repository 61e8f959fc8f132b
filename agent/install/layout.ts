// On-disk moves of an install: staging -> versions/<version>@<sha256> (read-only, complete),
// `current` swaps. Every step is idempotent and leaves either the old or the new state after a crash.
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ModeldError } from '../errors.js';
import { fsyncPath, fsyncTree, writeFileAtomic } from '../durable.js';
import { COMPLETE_MARKER, isVersionComplete, type CompleteMarker } from './marker.js';
import { makeReadOnly } from './read-only.js';
import { treeDigest } from './tree-digest.js';
import { rmTree } from './rm-tree.js';
import { describeTree, parseTreeName, sameTree, treeName, type TreeRef } from './tree-ref.js';

export const CURRENT = 'current';
export const CURRENT_TMP_PREFIX = 'current.tmp-';
/** A tree being removed is first renamed to this prefix, so versions/ never holds half a tree under its own name. */
export const TRASH_PREFIX = '.trash-';
/** A tree being built in place (the layout migration) has this prefix until it is complete and renamed. */
export const PARTIAL_PREFIX = '.partial-';

const rand = () => randomBytes(6).toString('hex');
const exists = async (p: string) => (await lstat(p).catch(() => undefined)) !== undefined;

function fsError(err: unknown, what: string): ModeldError {
  if (err instanceof ModeldError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return new ModeldError('NoSpace', `disk full while ${what}: ${e.message}`, { cause: err, retryable: true });
  return new ModeldError('InstallFailed', `${what} failed: ${e?.message ?? String(err)}`, { cause: err });
}

/** The tree a directory under versions/ holds, from its name; Internal when it is not a tree's name. */
function treeOf(treeDir: string): TreeRef {
  const tree = parseTreeName(basename(treeDir));
  if (!tree) throw new ModeldError('Internal', `not a usable tree directory name: '${basename(treeDir)}'`);
  return tree;
}

/**
 * Move an unpacked, verified staging directory to versions/<version>@<sha256>: write the completion
 * marker last, make it read-only, fsync the tree, rename, fsync the parent. A complete tree already in
 * place wins (the staging copy is discarded): its name says it holds the same bytes. An incomplete
 * one is crash debris and is replaced.
 */
export async function promoteTree(stagingDir: string, treeDir: string, sha256: string): Promise<void> {
  const tree = treeOf(treeDir);
  if (tree.sha256 !== sha256) throw new ModeldError('Internal', `tree ${basename(treeDir)} is not named for the digest ${sha256}`);
  try {
    if (await isVersionComplete(treeDir)) return await rmTree(stagingDir);
    if (await exists(treeDir)) await rmTree(treeDir);
    if (!(await lstat(stagingDir).catch(() => undefined))?.isDirectory()) {
      throw new ModeldError('InstallFailed', `nothing to promote: ${stagingDir} is not a directory`);
    }
    const marker: CompleteMarker = { sha256, completedAt: Date.now(), tree: await treeDigest(stagingDir) };
    await writeFileAtomic(join(stagingDir, COMPLETE_MARKER), JSON.stringify(marker) + '\n');
    await makeReadOnly(stagingDir, { includeRoot: false }); // the root stays writable so it can be renamed across parents
    await fsyncTree(stagingDir);
    await mkdir(dirname(treeDir), { recursive: true });
    await rename(stagingDir, treeDir);
    await chmod(treeDir, 0o555);
    await fsyncPath(treeDir);
    await fsyncPath(dirname(treeDir));
  } catch (err) {
    throw fsError(err, `promoting ${describeTree(tree)}`);
  }
}

/** Point `current` at versions/<tree>: a new relative link renamed over the old one, then fsync. */
export async function swapCurrent(modelDir: string, tree: TreeRef): Promise<void> {
  const name = treeName(tree);
  if (!(await isVersionComplete(join(modelDir, 'versions', name)))) {
    throw new ModeldError('InstallFailed', `version ${describeTree(tree)} is not completely installed; current not switched`);
  }
  const tmp = join(modelDir, CURRENT_TMP_PREFIX + rand());
  try {
    await symlink(`versions/${name}`, tmp);
    await rename(tmp, join(modelDir, CURRENT));
    await fsyncPath(modelDir);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw fsError(err, `switching current to ${describeTree(tree)}`);
  }
}

/** The tree `current` points at, or undefined when there is no link (or it is not ours). */
export async function readCurrent(modelDir: string): Promise<TreeRef | undefined> {
  const target = await readlink(join(modelDir, CURRENT)).catch(() => undefined);
  const name = target?.match(/^versions\/([^/]+)\/?$/)?.[1];
  return name === undefined ? undefined : parseTreeName(name);
}

/** Remove the `current` link (deleting a model); the versions stay until removed one by one. */
export async function removeCurrent(modelDir: string): Promise<void> {
  await unlink(join(modelDir, CURRENT)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw fsError(err, 'removing current');
  });
  if (await exists(modelDir)) await fsyncPath(modelDir);
}

/**
 * Remove an installed tree: refused for the one `current` points at (guarantee 8). It is renamed
 * to a trash name first so a crash never leaves half a tree under its own name.
 */
export async function removeTreeDir(treeDir: string): Promise<void> {
  const tree = treeOf(treeDir);
  const modelDir = dirname(dirname(treeDir));
  if (sameTree(await readCurrent(modelDir), tree)) {
    throw new ModeldError('InstallFailed', `refusing to remove version ${describeTree(tree)}: current points at it`);
  }
  const trash = join(dirname(treeDir), `${TRASH_PREFIX}${basename(treeDir)}-${rand()}`);
  try {
    await rename(treeDir, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fsError(err, `removing ${describeTree(tree)}`);
  }
  await fsyncPath(dirname(treeDir));
  await rmTree(trash);
}

/** Empty staging/ (at start, before any unpack); the directory itself stays (it may be a mount point). */
export async function clearStaging(stagingDir: string): Promise<void> {
  await mkdir(stagingDir, { recursive: true });
  for (const name of await readdir(stagingDir)) await rmTree(join(stagingDir, name));
}
