import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { clearStaging, promoteTree, readCurrent, removeCurrent, removeTreeDir, swapCurrent } from '../../agent/install/layout.js';
import { readMarker } from '../../agent/install/marker.js';
import { recoverInstallState } from '../../agent/install/recover.js';
import { treeName, type TreeRef } from '../../agent/install/tree-ref.js';
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
/** The tree of version `v` built from bytes `build` (a stand-in digest: what matters here is the name). */
const tree = (v: string, build = ''): Required<TreeRef> => ({ version: v, sha256: createHash('sha256').update(`${v}${build}`).digest('hex') });
const t1 = tree('1');
const t2 = tree('2');

/** Unpack a small archive for version `v` into staging and promote it as tree(v, build). */
async function install(v: string, ns = 'default', name = 'resnet', build = ''): Promise<string> {
  const archive = await writeRawTar(join(root, 'archives', `${v}.tar`), [
    { path: 'payload.txt', body: payload(v) },
    { path: 'bin/', type: '5' },
    { path: 'bin/run.sh', body: '#!/bin/sh\n', mode: 0o755 },
    { path: 'link', type: '2', linkpath: 'payload.txt' },
  ]);
  const job = join(paths.stagingDir, `job-${v}`);
  await unpackArchive(archive, job, LIMITS);
  const t = tree(v, build);
  const treeDir = paths.treeDir(ns, name, t);
  await promoteTree(job, treeDir, t.sha256);
  return treeDir;
}

describe('promoteTree', () => {
  it('moves staging into versions/<v>@<sha256>, read-only, with the completion marker', async () => {
    const dir = await install('1');
    expect(await listTree(paths.stagingDir)).toEqual([]);
    expect(await listTree(dir)).toEqual(['.modeld-complete', 'bin/', 'bin/run.sh', 'link', 'payload.txt']);
    expect((await stat(dir)).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dir, 'bin'))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dir, 'payload.txt'))).mode & 0o7777).toBe(0o444);
    expect((await stat(join(dir, 'bin/run.sh'))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dir, '.modeld-complete'))).mode & 0o7777).toBe(0o444);
    expect((await readMarker(dir))?.sha256).toBe(t1.sha256);
    expect(dir).toBe(join(paths.modelDir('default', 'resnet'), 'versions', `1@${t1.sha256}`));
  });

  it('installs a version republished with other bytes beside the first build, each under its digest', async () => {
    const first = await install('1');
    const second = await install('1', 'default', 'resnet', 'retrained');
    expect(second).not.toBe(first);
    expect((await readdir(join(paths.modelDir('default', 'resnet'), 'versions'))).sort()).toEqual([treeName(t1), treeName(tree('1', 'retrained'))].sort());
    expect((await readMarker(first))?.sha256).toBe(t1.sha256);
    expect((await readMarker(second))?.sha256).toBe(tree('1', 'retrained').sha256);
  });

  it('refuses a tree directory not named for the digest it is given', async () => {
    const job = join(paths.stagingDir, 'job');
    await mkdir(job);
    await expect(promoteTree(job, paths.treeDir('default', 'resnet', t1), t2.sha256)).rejects.toMatchObject({ code: 'Internal' });
    await expect(promoteTree(job, paths.treeDir('default', 'resnet', { version: '1' }), t1.sha256)).rejects.toMatchObject({ code: 'Internal' });
  });

  it('is idempotent: a complete version stays, a second staging copy is discarded', async () => {
    const dir = await install('1');
    const before = await readMarker(dir);
    const again = join(paths.stagingDir, 'again');
    await mkdir(again);
    await writeFile(join(again, 'payload.txt'), 'different');
    await promoteTree(again, dir, t1.sha256);
    expect(await readMarker(dir)).toEqual(before);
    expect(await readFile(join(dir, 'payload.txt'), 'utf8')).toBe(payload('1'));
    expect(await listTree(paths.stagingDir)).toEqual([]);
    await promoteTree(join(paths.stagingDir, 'gone'), dir, t1.sha256); // staging already gone: still fine
  });

  it('replaces an incomplete version directory left by a crash', async () => {
    const dir = paths.treeDir('default', 'resnet', t1);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'half.bin'), 'half');
    await install('1');
    expect(await listTree(dir)).not.toContain('half.bin');
    expect(await readMarker(dir)).toBeDefined();
  });
});

describe('current', () => {
  it('swapCurrent points current at versions/<v>@<sha256> with a relative link; readCurrent reads the tree back', async () => {
    await install('1');
    await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    expect(await readCurrent(modelDir)).toBeUndefined();
    await swapCurrent(modelDir, t1);
    expect(await readlink(paths.current('default', 'resnet'))).toBe(`versions/${treeName(t1)}`);
    await swapCurrent(modelDir, t2);
    expect(await readCurrent(modelDir)).toEqual(t2);
    expect(await readFile(join(modelDir, 'current', 'payload.txt'), 'utf8')).toBe(payload('2'));
    expect((await listTree(modelDir)).filter((p) => p.startsWith('current'))).toEqual(['current']);
  });

  it('refuses to point current at a version that is not complete', async () => {
    const modelDir = paths.modelDir('default', 'resnet');
    await mkdir(paths.treeDir('default', 'resnet', tree('3')), { recursive: true });
    await expect(swapCurrent(modelDir, tree('3'))).rejects.toMatchObject({ code: 'InstallFailed' });
    await expect(swapCurrent(modelDir, { version: '../x' })).rejects.toMatchObject({ code: 'Internal' });
    expect(await readCurrent(modelDir)).toBeUndefined();
  });

  it('swaps are atomic: a reader in another process never sees a missing link or a mix', async () => {
    await install('1');
    await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    await swapCurrent(modelDir, t1);
    // The reader is a separate process so its reads truly interleave with our renames. It reads
    // until it has seen the link change 20 times (and read 4000 times): on a loaded machine the
    // two processes may take turns in long slices. A bound keeps a broken swap from hanging it.
    const script = join(root, 'reader.mjs');
    await writeFile(script, `
      import { readlinkSync, readFileSync } from 'node:fs';
      const [modelDir, reads] = process.argv.slice(2);
      const valid = new Map([[${JSON.stringify(`versions/${treeName(t1)}`)}, ${JSON.stringify(payload('1'))}], [${JSON.stringify(`versions/${treeName(t2)}`)}, ${JSON.stringify(payload('2'))}]]);
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
      for (; !exited && swaps < 1_000_000; swaps++) await swapCurrent(modelDir, swaps % 2 ? t1 : t2);
      expect(await exit).toBe(0);
    } finally {
      await reader.end();
    }
    const res = JSON.parse(out) as { errors: number; first: string[]; seen: string[] };
    expect(res.first).toEqual([]);
    expect(res.errors).toBe(0);
    expect(swaps).toBeGreaterThan(10);
    expect(res.seen.sort()).toEqual([`versions/${treeName(t1)}`, `versions/${treeName(t2)}`].sort());
    expect((await listTree(modelDir)).filter((p) => p.startsWith('current'))).toEqual(['current']);
  });
});

describe('removal and recovery', () => {
  it('removeTreeDir refuses the current tree and removes another completely, another build of the same version too', async () => {
    const v1 = await install('1');
    const v2 = await install('2');
    const v2b = await install('2', 'default', 'resnet', 'retrained');
    const modelDir = paths.modelDir('default', 'resnet');
    await swapCurrent(modelDir, t2);
    await expect(removeTreeDir(v2)).rejects.toMatchObject({ code: 'InstallFailed' });
    await removeTreeDir(v1);
    await removeTreeDir(v2b);
    const n = treeName(t2);
    expect(await listTree(join(modelDir, 'versions'))).toEqual([`${n}/`, `${n}/.modeld-complete`, `${n}/bin/`, `${n}/bin/run.sh`, `${n}/link`, `${n}/payload.txt`]);
    await removeTreeDir(v1); // already gone: fine
    await removeCurrent(modelDir);
    await removeTreeDir(v2);
    expect(await listTree(modelDir)).toEqual(['versions/']);
  });

  it('clearStaging empties staging, read-only debris included', async () => {
    await writeRawTar(join(paths.stagingDir, 'job', 'x.tar'), [{ path: 'a', body: 'a' }]);
    await mkdir(join(paths.stagingDir, 'ro', 'sub'), { recursive: true });
    await import('node:fs/promises').then((fs) => fs.chmod(join(paths.stagingDir, 'ro'), 0o555));
    await clearStaging(paths.stagingDir);
    expect(await listTree(paths.stagingDir)).toEqual([]);
  });

  it('recoverInstallState clears staging, stray swap links, trash and partial trees, and reports incomplete trees', async () => {
    await install('1');
    await install('2');
    const modelDir = paths.modelDir('default', 'resnet');
    await swapCurrent(modelDir, t1);
    await symlink(`versions/${treeName(t2)}`, join(modelDir, 'current.tmp-deadbeef')); // a swap cut before its rename
    await mkdir(join(modelDir, 'versions', '.trash-0-abc', 'x'), { recursive: true }); // a removal cut short
    await mkdir(join(modelDir, 'versions', '.partial-1-abc', 'x'), { recursive: true }); // a layout migration cut short
    const t3 = tree('3');
    await mkdir(paths.treeDir('default', 'resnet', t3), { recursive: true }); // no marker
    await writeFile(join(paths.treeDir('default', 'resnet', t3), 'half.bin'), 'half');
    await mkdir(join(paths.stagingDir, 'job-9'), { recursive: true });
    const report = await recoverInstallState(paths);
    expect(report.removedTmpLinks).toEqual([join(modelDir, 'current.tmp-deadbeef')]);
    expect(report.removedTrash.sort()).toEqual([join(modelDir, 'versions', '.partial-1-abc'), join(modelDir, 'versions', '.trash-0-abc')]);
    expect(report.incompleteTrees).toEqual([{ namespace: 'default', name: 'resnet', tree: t3, path: paths.treeDir('default', 'resnet', t3) }]);
    expect(report.brokenCurrent).toEqual([]);
    expect(report.completeTrees.map((v) => [v.tree.version, v.current]).sort()).toEqual([['1', true], ['2', false]]);
    expect(await listTree(paths.stagingDir)).toEqual([]);
    expect(await readCurrent(modelDir)).toEqual(t1);
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
