// Crash-safe file operations: data reaches the disk before the name that points at it.
// Shared by the blob store (fetch/), installation (install/) and verify (admin/).
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** fsync a file or a directory (a directory's fsync persists the names in it). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync every regular file and directory under `root` (children before parents; symlinks skipped). */
export async function fsyncTree(root: string): Promise<void> {
  const st = await lstat(root);
  if (st.isDirectory()) {
    for (const name of await readdir(root)) await fsyncTree(join(root, name));
    await fsyncPath(root);
  } else if (st.isFile()) {
    await fsyncPath(root);
  }
}

/** mkdir -p, then fsync each directory that gained an entry. */
export async function mkdirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    await fsyncPath(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
}

/** rename, then fsync the directories involved. */
export async function renameDurable(src: string, dst: string): Promise<void> {
  await rename(src, dst);
  await fsyncPath(dirname(dst));
  if (dirname(src) !== dirname(dst)) await fsyncPath(dirname(src));
}

/** Write to a temp name beside `path`, fsync it, rename over `path`, fsync the directory. */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncPath(dirname(path));
}
