import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { clearStaging, promoteVersion, readCurrent, removeCurrent, removeVersionDir, swapCurrent } from '../../agent/install/layout.js';
import { readMarker } from '../../agent/install/marker.js';
import { recoverInstallState } from '../../agent/install/recover.js';
import { unpackArchive } from '../../agent/install/unpack.js';
import { statePaths, type StatePaths } from '../../agent/paths.js';
import { listTree, writeRawTar } from '../helpers/archives.js';
import { spawnTree } from '../helpers/process-tree.js';

const LIMITS = { maxBytes: 64 * 1024 * 1024, maxEntries: 1000 };
let root: string;
let paths: StatePaths;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'modeld-layout-'));
  paths = statePaths(root);
  await mkdir(paths.stagingDir, { recursive: true });
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const payload = (v: string) => `${v}\n`.repeat(8192);

/** Unpack a small archive for version `v` into staging and promote it. */
async function install(v: string, ns = 'default', name = 'resnet'): Promise<string> {
  const archive = await writeRawTar(join(root, 'archives', `${v}.tar`), [
    { path: 'payload.txt', body: payload(v) },
    { path: 'bin/', type: '5' },
    { path: 'bin/run.sh', body: '#!/bin/sh\n', mode: 0o755 },
    { path: 'link', type: '2', linkpath: 'payload.txt' },
  ]);
  const job = join(paths.stagingDir, `job-${v}`);
  await unpackArchive(archive, job, LIMITS);
  const versionDir = paths.versionDir(ns, name, v);
  await promoteVersion(job, versionDir, { sha256: 'ab'.repeat(32) });
  return versionDir;
}

describe('promoteVersion', () => {
  it('moves staging into versions/<v>, read-only, with the completion marker', async () => {
    const dir = await install('1');
    expect(await listTree(paths.stagingDir)).toEqual([]);
    expect(await listTree(dir)).toEqual(['.modeld-complete', 'bin/', 'bin/run.sh', 'link', 'payload.txt']);
    expect((await stat(dir)).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dir, 'bin'))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dir, 'payload.txt'))).mode & 0o7777).toBe(0o444);
    expect((await stat(join(dir, 'bin/run.sh'))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dir, '.modeld-complete'))).mode & 0o7777).toBe(0o444);
    expect((await readMarker(dir))?.sha256).toBe('ab'.repeat(32));
  });

  it('is idempotent: a complete version stays, a second staging copy is discarded', async () => {
    const dir = await install('1');
    const before = await readMarker(dir);
    const again = join(paths.stagingDir, 'again');
    await mkdir(again);
    await writeFile(join(again, 'payload.txt'), 'different');
    await promoteVersion(again, dir);
    expect(await readMarker(dir)).toEqual(before);
    expect(await readFile(join(dir, 'payload.txt'), 'utf8')).toBe(payload('1'));
    expect(await listTree(paths.stagingDir)).toEqual([]);
    await promoteVersion(join(paths.stagingDir, 'gone'), dir); // staging already gone: still fine
  });

  it('replaces an incomplete version directory left by a crash', async () => {
    const dir = paths.versionDir('default', 'resnet', '1');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'half.bin'), 'half');
    await install('1');
    expect(await listTree(dir)).not.toContain('half.bin');
    expect(await readMarker(dir)).toBeDefined();
  });
});

describe('current', () => {
  it('swapCurrent points current at versions/<v> with a relative link; readCurrent reads it back', async () => {
    await install('1');
    await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    expect(await readCurrent(modelDir)).toBeUndefined();
    await swapCurrent(modelDir, '1');
    expect(await readlink(paths.current('default', 'resnet'))).toBe('versions/1');
    await swapCurrent(modelDir, '2');
    expect(await readCurrent(modelDir)).toBe('2');
    expect(await readFile(join(modelDir, 'current', 'payload.txt'), 'utf8')).toBe(payload('2'));
    expect((await listTree(modelDir)).filter((p) => p.startsWith('current'))).toEqual(['current']);
  });

  it('refuses to point current at a version that is not complete', async () => {
    const modelDir = paths.modelDir('default', 'resnet');
    await mkdir(join(modelDir, 'versions', '3'), { recursive: true });
    await expect(swapCurrent(modelDir, '3')).rejects.toMatchObject({ code: 'InstallFailed' });
    await expect(swapCurrent(modelDir, '../x')).rejects.toMatchObject({ code: 'Internal' });
    expect(await readCurrent(modelDir)).toBeUndefined();
  });

  it('swaps are atomic: a reader in another process never sees a missing link or a mix', async () => {
    await install('1');
    await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    await swapCurrent(modelDir, '1');
    // The reader is a separate process so its reads truly interleave with our renames. It reads
    // until it has seen the link change 20 times (and read 4000 times): on a loaded machine the
    // two processes may take turns in long slices. A bound keeps a broken swap from hanging it.
    const script = join(root, 'reader.mjs');
    await writeFile(script, `
      import { readlinkSync, readFileSync } from 'node:fs';
      const [modelDir, reads] = process.argv.slice(2);
      const valid = new Map([['versions/1', ${JSON.stringify(payload('1'))}], ['versions/2', ${JSON.stringify(payload('2'))}]]);
      const contents = new Set(valid.values());
      const errors = []; const seen = new Set();
      const until = Date.now() + 120000;
      let last; let changes = 0;
      for (let i = 0; (i < Number(reads) || changes < 20) && Date.now() < until; i++) {
        try { const t = readlinkSync(modelDir + '/current'); seen.add(t); if (!valid.has(t)) errors.push('bad target ' + t); if (last !== undefined && t !== last) changes++; last = t; }
        catch (e) { errors.push('readlink ' + e.code); }
        try { if (!contents.has(readFileSync(modelDir + '/current/payload.txt', 'utf8'))) errors.push('mixed or partial content'); }
        catch (e) { errors.push('read ' + e.code); }
      }
      console.log(JSON.stringify({ errors: errors.length, first: errors.slice(0, 5), seen: [...seen] }));
    `);
    const reader = spawnTree(process.execPath, [script, modelDir, '4000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    reader.child.stdout!.on('data', (c: Buffer) => (out += c));
    let exited = false;
    const exit = reader.exited.then(({ code }) => ((exited = true), code));
    let swaps = 0;
    try {
      for (; !exited && swaps < 1_000_000; swaps++) await swapCurrent(modelDir, swaps % 2 ? '1' : '2');
      expect(await exit).toBe(0);
    } finally {
      await reader.end();
    }
    const res = JSON.parse(out) as { errors: number; first: string[]; seen: string[] };
    expect(res.first).toEqual([]);
    expect(res.errors).toBe(0);
    expect(swaps).toBeGreaterThan(10);
    expect(res.seen.sort()).toEqual(['versions/1', 'versions/2']);
    expect((await listTree(modelDir)).filter((p) => p.startsWith('current'))).toEqual(['current']);
  });
});

describe('removal and recovery', () => {
  it('removeVersionDir refuses the current version and removes another completely', async () => {
    const v1 = await install('1');
    const v2 = await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    await swapCurrent(modelDir, '2');
    await expect(removeVersionDir(v2)).rejects.toMatchObject({ code: 'InstallFailed' });
    await removeVersionDir(v1);
    expect(await listTree(join(modelDir, 'versions'))).toEqual(['2/', '2/.modeld-complete', '2/bin/', '2/bin/run.sh', '2/link', '2/payload.txt']);
    await removeVersionDir(v1); // already gone: fine
    await removeCurrent(modelDir);
    await removeVersionDir(v2);
    expect(await listTree(modelDir)).toEqual(['versions/']);
  });

  it('clearStaging empties staging, read-only debris included', async () => {
    await writeRawTar(join(paths.stagingDir, 'job', 'x.tar'), [{ path: 'a', body: 'a' }]);
    await mkdir(join(paths.stagingDir, 'ro', 'sub'), { recursive: true });
    await import('node:fs/promises').then((fs) => fs.chmod(join(paths.stagingDir, 'ro'), 0o555));
    await clearStaging(paths.stagingDir);
    expect(await listTree(paths.stagingDir)).toEqual([]);
  });

  it('recoverInstallState clears staging, stray swap links and trash, and reports incomplete versions', async () => {
    await install('1');
    await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    await swapCurrent(modelDir, '1');
    await symlink('versions/2', join(modelDir, 'current.tmp-deadbeef')); // a swap cut before its rename
    await mkdir(join(modelDir, 'versions', '.trash-0-abc', 'x'), { recursive: true }); // a removal cut short
    await mkdir(join(modelDir, 'versions', '3'), { recursive: true }); // no marker
    await writeFile(join(modelDir, 'versions', '3', 'half.bin'), 'half');
    await mkdir(join(paths.stagingDir, 'job-9'), { recursive: true });
    const report = await recoverInstallState(paths);
    expect(report.removedTmpLinks).toEqual([join(modelDir, 'current.tmp-deadbeef')]);
    expect(report.removedTrash).toEqual([join(modelDir, 'versions', '.trash-0-abc')]);
    expect(report.incompleteVersions).toEqual([{ namespace: 'default', name: 'resnet', version: '3', path: join(modelDir, 'versions', '3') }]);
    expect(report.brokenCurrent).toEqual([]);
    expect(report.completeVersions.map((v) => [v.version, v.current]).sort()).toEqual([['1', true], ['2', false]]);
    expect(await listTree(paths.stagingDir)).toEqual([]);
    expect(await readCurrent(modelDir)).toBe('1');
    expect((await lstat(join(modelDir, 'current.tmp-deadbeef')).catch(() => undefined))).toBeUndefined();
  });

  it('recoverInstallState reports a current that points at a missing version', async () => {
    const modelDir = paths.modelDir('ns', 'm');
    await mkdir(join(modelDir, 'versions'), { recursive: true });
    await symlink('versions/7', join(modelDir, 'current'));
    const report = await recoverInstallState(paths);
    expect(report.brokenCurrent).toEqual([{ namespace: 'ns', name: 'm', target: '7' }]);
  });
});
