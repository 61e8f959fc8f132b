// Remove a tree that may hold read-only directories (installed versions are 0555).
import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

async function makeWritable(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await chmod(path, 0o700);
  for (const name of await readdir(path)) await makeWritable(join(path, name));
}

/** chmod directories back to writable, then rm -rf; a missing path is fine. */
export async function rmTree(path: string): Promise<void> {
  await makeWritable(path);
  await rm(path, { recursive: true, force: true });
}
