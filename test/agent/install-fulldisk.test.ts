// A full disk corrupts nothing (guarantee 8): on a 2 MiB tmpfs, an unpack or a promotion that runs
// out of space fails with NoSpace, staging is cleaned, and the installed version and `current` are
// untouched. Needs `mount -t tmpfs` (root); where that is not permitted the tests are skipped and say why.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { promoteTree, readCurrent, swapCurrent } from '../../agent/install/layout.js';
import { readMarker } from '../../agent/install/marker.js';
import { unpackArchive } from '../../agent/install/unpack.js';
import { statePaths, type StatePaths } from '../../agent/paths.js';
import { listTree, writeRawTar } from '../helpers/archives.js';

const run = promisify(execFile);
const LIMITS = { maxBytes: 64 * 1024 * 1024, maxEntries: 1000 };
let base: string;
let mnt: string;
let mounted = false;
let skipReason = '';
let paths: StatePaths;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'modeld-fulldisk-'));
  mnt = join(base, 'state');
  await mkdir(mnt);
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0755', 'tmpfs', mnt]);
    mounted = true;
  } catch (err) {
    skipReason = `cannot mount a 2 MiB tmpfs here (${(err as Error).message.trim()}); full-disk tests skipped`;
  }
  paths = statePaths(mnt);
});
afterAll(async () => {
  if (mounted) await run('umount', [mnt]).catch((err: Error) => console.warn(`umount ${mnt}: ${err.message}`));
  await rm(base, { recursive: true, force: true });
});

function needMount(ctx: TestContext): void {
  if (mounted) return;
  console.warn(skipReason);
  ctx.skip();
}

const payload = 'version one\n'.repeat(100);
const v1 = { version: '1', sha256: '1'.repeat(64) };
const v3 = { version: '3', sha256: '3'.repeat(64) };

async function installV1(): Promise<void> {
  const modelDir = paths.modelDir('default', 'resnet');
  if ((await readCurrent(modelDir))?.version === '1') return;
  const archive = await writeRawTar(join(base, 'archives', 'v1.tar'), [{ path: 'payload.txt', body: payload }, { path: 'sub/', type: '5' }]);
  const job = join(paths.stagingDir, 'v1');
  await unpackArchive(archive, job, LIMITS);
  await promoteTree(job, paths.treeDir('default', 'resnet', v1), v1.sha256);
  await swapCurrent(modelDir, v1);
}

async function expectV1Untouched(): Promise<void> {
  const modelDir = paths.modelDir('default', 'resnet');
  expect(await readCurrent(modelDir)).toEqual(v1);
  expect(await readFile(join(modelDir, 'current', 'payload.txt'), 'utf8')).toBe(payload);
  expect(await readMarker(paths.treeDir('default', 'resnet', v1))).toBeDefined();
  const n = `1@${v1.sha256}`;
  expect(await listTree(paths.versionsDir('default', 'resnet'))).toEqual([`${n}/`, `${n}/.modeld-complete`, `${n}/payload.txt`, `${n}/sub/`]);
  expect(await listTree(paths.stagingDir)).toEqual([]);
}

describe('full disk (2 MiB tmpfs)', () => {
  it('an unpack larger than the disk fails with NoSpace; the old version and current stay', async (ctx) => {
    needMount(ctx);
    await installV1();
    // Incompressible, so the archive (kept off the small disk) is as big as what it unpacks to.
    const archive = await writeRawTar(join(base, 'archives', 'v2.tgz'), [
      { path: 'weights-a.bin', body: randomBytes(1536 * 1024) },
      { path: 'weights-b.bin', body: randomBytes(1536 * 1024) },
    ], { gzip: true });
    await expect(unpackArchive(archive, join(paths.stagingDir, 'v2'), LIMITS)).rejects.toMatchObject({ code: 'NoSpace' });
    await expectV1Untouched();
  });

  it('a promotion on a full disk fails with NoSpace and installs nothing', async (ctx) => {
    needMount(ctx);
    await installV1();
    const archive = await writeRawTar(join(base, 'archives', 'v3.tar'), [{ path: 'payload.txt', body: 'three' }]);
    const job = join(paths.stagingDir, 'v3');
    await unpackArchive(archive, job, LIMITS);
    // Fill what is left, so the completion marker cannot be written.
    const filler = join(mnt, 'filler');
    await writeFile(filler, Buffer.alloc(4 * 1024 * 1024)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOSPC') throw err;
    });
    try {
      await expect(promoteTree(job, paths.treeDir('default', 'resnet', v3), v3.sha256)).rejects.toMatchObject({ code: 'NoSpace' });
      await expect(swapCurrent(paths.modelDir('default', 'resnet'), v3)).rejects.toMatchObject({ code: 'InstallFailed' });
    } finally {
      await rm(filler, { force: true });
    }
    await rm(job, { recursive: true, force: true }); // the caller cleans staging after a failed step
    await expectV1Untouched();
  });
});
