import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fsyncPath, fsyncTree, writeFileAtomic } from '../../agent/durable.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modeld-fsync-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('crash-safe helpers', () => {
  it('writeFileAtomic replaces the whole file and leaves no temp file', async () => {
    const f = join(dir, 'state.json');
    await writeFile(f, 'old contents that are longer than the new ones');
    await writeFileAtomic(f, '{"v":2}');
    expect(await readFile(f, 'utf8')).toBe('{"v":2}');
    await writeFileAtomic(f, Buffer.from('{"v":3}'));
    expect(await readFile(f, 'utf8')).toBe('{"v":3}');
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('writeFileAtomic into a missing directory fails and leaves nothing', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'f'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(dir)).toEqual([]);
  });

  it('fsyncPath syncs files and directories; fsyncTree a whole tree', async () => {
    await writeFile(join(dir, 'a'), 'a');
    await fsyncPath(join(dir, 'a'));
    await fsyncPath(dir);
    await fsyncTree(dir);
    await expect(fsyncPath(join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
