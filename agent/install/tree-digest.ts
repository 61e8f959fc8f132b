// A digest of an installed version's whole tree, recorded in the completion marker at promotion,
// so `modeld verify` can re-check a version without its archive. Covers every entry's relative
// path and type, file contents and the exec bit, and link targets; the marker itself is excluded.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { COMPLETE_MARKER } from './marker.js';

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** One line per entry, sorted by path: `f <path> <x|-> <size> <sha256>`, `d <path>`, `l <path> <target>`. */
export async function treeLines(root: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      if (rel === '' && name === COMPLETE_MARKER) continue;
      const path = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(path);
      if (st.isDirectory()) {
        lines.push(`d ${JSON.stringify(r)}`);
        await walk(path, r);
      } else if (st.isSymbolicLink()) {
        lines.push(`l ${JSON.stringify(r)} ${JSON.stringify(await readlink(path))}`);
      } else if (st.isFile()) {
        lines.push(`f ${JSON.stringify(r)} ${st.mode & 0o111 ? 'x' : '-'} ${st.size} ${await fileSha256(path)}`);
      } else {
        lines.push(`? ${JSON.stringify(r)}`);
      }
    }
  };
  await walk(root, '');
  return lines;
}

export async function treeDigest(root: string): Promise<string> {
  return createHash('sha256').update((await treeLines(root)).join('\n')).digest('hex');
}
