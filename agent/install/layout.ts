// On-disk moves of an install: staging -> versions/<v> (read-only, complete), `current` swaps.
// Every step is idempotent and leaves either the old or the new state after a crash.
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ModeldError } from '../errors.js';
import { fsyncPath, fsyncTree, writeFileAtomic } from '../durable.js';
import { COMPLETE_MARKER, isVersionComplete, type CompleteMarker } from './marker.js';
import { makeReadOnly } from './read-only.js';
import { treeDigest } from './tree-digest.js';
import { rmTree } from './rm-tree.js';

export const CURRENT = 'current';
export const CURRENT_TMP_PREFIX = 'current.tmp-';
/** A version being removed is first renamed to this prefix, so versions/ never holds half a version. */
export const TRASH_PREFIX = '.trash-';

const rand = () => randomBytes(6).toString('hex');
const exists = async (p: string) => (await lstat(p).catch(() => undefined)) !== undefined;

function fsError(err: unknown, what: string): ModeldError {
  if (err instanceof ModeldError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return new ModeldError('NoSpace', `disk full while ${what}: ${e.message}`, { cause: err, retryable: true });
  return new ModeldError('InstallFailed', `${what} failed: ${e?.message ?? String(err)}`, { cause: err });
}

function assertVersionName(version: string): void {
  if (!version || version === '.' || version === '..' || version.includes('/') || version.includes('\0')) {
    throw new ModeldError('Internal', `not a usable version directory name: '${version}'`);
  }
}

/**
 * Move an unpacked, verified staging directory to versions/<v>: write the completion marker last,
 * make it read-only, fsync the tree, rename, fsync the parent. A complete versionDir already in place
 * wins (the staging copy is discarded); an incomplete one is crash debris and is replaced.
 */
export async function promoteVersion(stagingDir: string, versionDir: string, opts: { sha256?: string } = {}): Promise<void> {
  assertVersionName(basename(versionDir));
  try {
    if (await isVersionComplete(versionDir)) return await rmTree(stagingDir);
    if (await exists(versionDir)) await rmTree(versionDir);
    if (!(await lstat(stagingDir).catch(() => undefined))?.isDirectory()) {
      throw new ModeldError('InstallFailed', `nothing to promote: ${stagingDir} is not a directory`);
    }
    const marker: CompleteMarker = { sha256: opts.sha256, completedAt: Date.now(), tree: await treeDigest(stagingDir) };
    await writeFileAtomic(join(stagingDir, COMPLETE_MARKER), JSON.stringify(marker) + '\n');
    await makeReadOnly(stagingDir, { includeRoot: false }); // the root stays writable so it can be renamed across parents
    await fsyncTree(stagingDir);
    await mkdir(dirname(versionDir), { recursive: true });
    await rename(stagingDir, versionDir);
    await chmod(versionDir, 0o555);
    await fsyncPath(versionDir);
    await fsyncPath(dirname(versionDir));
  } catch (err) {
    throw fsError(err, `promoting ${basename(versionDir)}`);
  }
}

/** Point `current` at versions/<version>: a new relative link renamed over the old one, then fsync. */
export async function swapCurrent(modelDir: string, version: string): Promise<void> {
  assertVersionName(version);
  if (!(await isVersionComplete(join(modelDir, 'versions', version)))) {
    throw new ModeldError('InstallFailed', `version ${version} is not completely installed; current not switched`);
  }
  const tmp = join(modelDir, CURRENT_TMP_PREFIX + rand());
  try {
    await symlink(`versions/${version}`, tmp);
    await rename(tmp, join(modelDir, CURRENT));
    await fsyncPath(modelDir);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw fsError(err, `switching current to ${version}`);
  }
}

/** The version `current` points at, or undefined when there is no link (or it is not ours). */
export async function readCurrent(modelDir: string): Promise<string | undefined> {
  const target = await readlink(join(modelDir, CURRENT)).catch(() => undefined);
  return target?.match(/^versions\/([^/]+)\/?$/)?.[1];
}

/** Remove the `current` link (deleting a model); the versions stay until removed one by one. */
export async function removeCurrent(modelDir: string): Promise<void> {
  await unlink(join(modelDir, CURRENT)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw fsError(err, 'removing current');
  });
  if (await exists(modelDir)) await fsyncPath(modelDir);
}

/**
 * Remove an installed version: refused for the one `current` points at (guarantee 8). It is renamed
 * to a trash name first so a crash never leaves half a version under its own name.
 */
export async function removeVersionDir(versionDir: string): Promise<void> {
  const version = basename(versionDir);
  const modelDir = dirname(dirname(versionDir));
  if ((await readCurrent(modelDir)) === version) {
    throw new ModeldError('InstallFailed', `refusing to remove version ${version}: current points at it`);
  }
  const trash = join(dirname(versionDir), `${TRASH_PREFIX}${version}-${rand()}`);
  try {
    await rename(versionDir, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fsError(err, `removing ${version}`);
  }
  await fsyncPath(dirname(versionDir));
  await rmTree(trash);
}

/** Empty staging/ (at start, before any unpack); the directory itself stays (it may be a mount point). */
export async function clearStaging(stagingDir: string): Promise<void> {
  await mkdir(stagingDir, { recursive: true });
  for (const name of await readdir(stagingDir)) await rmTree(join(stagingDir, name));
}
