// Installed versions are read-only: files 0444 (0555 when executable), directories 0555.
import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** chmod the tree under `root`, children before parents; symlinks are left alone (no lchmod on Linux). */
export async function makeReadOnly(root: string, opts: { includeRoot: boolean }): Promise<void> {
  const walk = async (path: string, isRoot: boolean): Promise<void> => {
    const st = await lstat(path);
    if (st.isDirectory()) {
      for (const name of await readdir(path)) await walk(join(path, name), false);
      if (!isRoot || opts.includeRoot) await chmod(path, 0o555);
    } else if (st.isFile()) {
      await chmod(path, st.mode & 0o111 ? 0o555 : 0o444);
    }
  };
  await walk(root, true);
}
