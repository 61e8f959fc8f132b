import { createHash, randomBytes } from 'node:crypto';
import { copyFile, link, lstat, mkdtemp, readFile, readlink, rm, stat, symlink, truncate, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectArchive } from '../../agent/install/detect.js';
import { unpackArchive } from '../../agent/install/unpack.js';
import { listTree, makeTree, packDir, rawTar, tarHeader, writeRawTar } from '../helpers/archives.js';

const LIMITS = { maxBytes: 256 * 1024 * 1024, maxEntries: 10_000 };
let root: string;
let staging: string;
let dest: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'modeld-unpack-'));
  staging = join(root, 'staging');
  dest = join(staging, 'job');
  await mkdir(staging);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function sourceTree(): Promise<{ src: string; big: Buffer }> {
  const src = join(root, 'src');
  const big = randomBytes(3 * 1024 * 1024 + 123);
  await makeTree(src, {
    'model.onnx': big,
    'config/labels.txt': 'cat\ndog\n',
    'empty/': '',
    ['deep/' + 'n'.repeat(60) + '/' + 'm'.repeat(60) + '/file-with-a-long-path.txt']: 'long',
  });
  await symlink('../model.onnx', join(src, 'config', 'model-link'));
  await link(join(src, 'config', 'labels.txt'), join(src, 'labels-hard.txt'));
  return { src, big };
}

async function expectSameTree(out: string, big: Buffer): Promise<void> {
  expect(sha(await readFile(join(out, 'model.onnx')))).toBe(sha(big));
  expect(await readFile(join(out, 'config/labels.txt'), 'utf8')).toBe('cat\ndog\n');
  expect(await readlink(join(out, 'config/model-link'))).toBe('../model.onnx');
  expect(sha(await readFile(join(out, 'config/model-link')))).toBe(sha(big));
  expect((await stat(join(out, 'labels-hard.txt'))).ino).toBe((await stat(join(out, 'config/labels.txt'))).ino);
  expect((await lstat(join(out, 'empty'))).isDirectory()).toBe(true);
  const longFile = join(out, 'deep', 'n'.repeat(60), 'm'.repeat(60), 'file-with-a-long-path.txt');
  expect(await readFile(longFile, 'utf8')).toBe('long');
}

describe('detectArchive', () => {
  it('detects by magic bytes, not by name', async () => {
    const { src } = await sourceTree();
    const gz = await packDir(src, join(root, 'a', 'weights.zip'), { gzip: true });
    const tar = await packDir(src, join(root, 'a', 'weights.tar.gz'));
    expect(await detectArchive(gz)).toBe('tar.gz');
    expect(await detectArchive(tar)).toBe('tar');
  });

  it('accepts an old v7 header by its checksum alone', async () => {
    const f = await writeRawTar(join(root, 'v7.bin'), [{ path: 'a.txt', body: 'v7', v7: true }]);
    expect(await detectArchive(f)).toBe('tar');
  });

  it('refuses what is not a tar: text, zip, empty, a header with a bad checksum', async () => {
    const text = join(root, 'x.tar');
    await writeFile(text, 'hello, this is not an archive\n'.repeat(40));
    const zip = join(root, 'x.zip');
    await writeFile(zip, Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(1000)]));
    const empty = join(root, 'empty.tar');
    await writeFile(empty, '');
    const bad = join(root, 'bad.tar');
    const h = tarHeader({ path: 'a', body: 'x', v7: true });
    h[0] ^= 1;
    await writeFile(bad, Buffer.concat([h, Buffer.alloc(1536)]));
    for (const f of [text, zip, empty, bad]) {
      await expect(detectArchive(f)).rejects.toMatchObject({ code: 'UnsupportedArchive' });
    }
  });
});

describe('unpackArchive: valid archives', () => {
  it.each([
    ['.tar', false, 'weights.tar'],
    ['.tar.gz', true, 'weights.tar.gz'],
    ['gzip named .zip', true, 'weights.zip'],
    ['plain tar named .tgz', false, 'weights.tgz'],
  ])('unpacks a real %s made by GNU tar', async (_label, gzip, name) => {
    const { src, big } = await sourceTree();
    const archive = await packDir(src, join(root, 'archives', name), { gzip });
    const res = await unpackArchive(archive, dest, LIMITS);
    await expectSameTree(dest, big);
    expect(res.files).toBe(4); // model, labels, long file, hard link (symlinks and dirs are not files)
    expect(res.bytes).toBe(big.length + 'cat\ndog\n'.length + 'long'.length);
  });

  it('unpacks a larger multi-file archive through backpressure without loss', async () => {
    const src = join(root, 'src');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 12; i++) files[`shard-${i}.bin`] = randomBytes(1024 * 1024 * (i % 3 === 0 ? 4 : 1) + i);
    for (let i = 0; i < 300; i++) files[`small/${i}.txt`] = Buffer.from(`file ${i}\n`);
    await makeTree(src, files);
    const archive = await packDir(src, join(root, 'archives', 'many.tgz'), { gzip: true });
    const res = await unpackArchive(archive, dest, LIMITS);
    expect(res.files).toBe(312);
    for (const [rel, content] of Object.entries(files)) expect(sha(await readFile(join(dest, rel)))).toBe(sha(content));
  });

  it('accepts pax global and extended headers (a 300-character path)', async () => {
    const rec = (k: string, v: string) => {
      const body = ` ${k}=${v}\n`;
      let len = body.length + 1;
      while (String(len).length + body.length !== len) len = String(len).length + body.length;
      return `${len}${body}`;
    };
    const long = 'p/'.repeat(140) + 'weights.bin';
    const archive = await writeRawTar(join(root, 'pax.tar'), [
      { path: 'pax_global_header', type: 'g', body: rec('comment', 'made by a test') },
      { path: 'PaxHeader/w', type: 'x', body: rec('path', long) },
      { path: 'truncated-name', body: 'w' },
    ]);
    const res = await unpackArchive(archive, dest, LIMITS);
    expect(res).toEqual({ files: 1, bytes: 1 });
    expect(await readFile(join(dest, long), 'utf8')).toBe('w');
  });

  it('unpacks a v7 archive and strips setuid, setgid and world-write bits', async () => {
    const archive = await writeRawTar(join(root, 'v7.tar'), [
      { path: 'bin/', type: '5', mode: 0o7777, v7: true },
      { path: 'bin/run', body: '#!/bin/sh\n', mode: 0o6777, v7: true },
      { path: 'data', body: 'd', mode: 0o666 },
    ]);
    await unpackArchive(archive, dest, LIMITS);
    for (const p of ['bin', 'bin/run', 'data']) {
      const mode = (await stat(join(dest, p))).mode & 0o7777;
      expect(mode & 0o7002, `${p} mode ${mode.toString(8)}`).toBe(0);
    }
    expect((await stat(join(dest, 'bin/run'))).mode & 0o100).toBe(0o100);
    expect(await listTree(dest)).toEqual(['bin/', 'bin/run', 'data']);
  });

  it('replaces debris of an earlier attempt in the destination', async () => {
    await makeTree(dest, { 'stale.txt': 'old' });
    const archive = await writeRawTar(join(root, 'a.tar'), [{ path: 'fresh.txt', body: 'new' }]);
    await unpackArchive(archive, dest, LIMITS);
    expect(await listTree(dest)).toEqual(['fresh.txt']);
  });

  it('refuses a destination outside a staging directory', async () => {
    const archive = await writeRawTar(join(root, 'a.tar'), [{ path: 'a.txt', body: 'a' }]);
    await expect(unpackArchive(archive, join(root, 'elsewhere'), LIMITS)).rejects.toMatchObject({ code: 'Internal' });
    expect(await listTree(root)).toEqual(['a.tar', 'staging/']);
  });
});

describe('unpackArchive: damaged and foreign input', () => {
  async function expectRefused(archive: string, code: string): Promise<void> {
    await expect(unpackArchive(archive, dest, LIMITS)).rejects.toMatchObject({ code });
    expect(await listTree(staging)).toEqual([]);
  }

  it('a .tar.gz truncated anywhere is CorruptArchive and leaves nothing (and never hangs)', async () => {
    const { src } = await sourceTree();
    const whole = await packDir(src, join(root, 'archives', 'a.tgz'), { gzip: true });
    const size = (await stat(whole)).size;
    // Many cut points: a cut while a file body is being written once left the unpack waiting forever.
    for (let i = 1; i < 24; i++) {
      const archive = join(root, 'archives', `cut-${i}.tgz`);
      await copyFile(whole, archive);
      await truncate(archive, Math.floor((size * i) / 24));
      await expectRefused(archive, 'CorruptArchive');
    }
  });

  it('a plain tar cut in the middle of a body is CorruptArchive', async () => {
    const { src } = await sourceTree();
    const archive = await packDir(src, join(root, 'archives', 'a.tar'));
    await truncate(archive, 1024 * 1024 + 100);
    await expectRefused(archive, 'CorruptArchive');
  });

  it('a plain tar cut between entries (no end-of-archive marker) is CorruptArchive', async () => {
    const archive = await writeRawTar(join(root, 'a.tar'), [{ path: 'a.txt', body: 'a' }, { path: 'b.txt', body: 'b' }], { end: false });
    await expectRefused(archive, 'CorruptArchive');
  });

  it('a header with a broken checksum after a good one is CorruptArchive', async () => {
    const good = rawTar([{ path: 'a.txt', body: 'a' }], { end: false });
    const bad = tarHeader({ path: 'b.txt', body: 'b' });
    bad[0] ^= 1;
    const archive = join(root, 'bad.tar');
    await writeFile(archive, Buffer.concat([good, bad, Buffer.alloc(512 + 1024)]));
    await expectRefused(archive, 'CorruptArchive');
  });

  it('gzip magic followed by garbage is CorruptArchive', async () => {
    const archive = join(root, 'garbage.tgz');
    await writeFile(archive, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomBytes(4096)]));
    await expectRefused(archive, 'CorruptArchive');
  });

  it('gzip of something that is not a tar is UnsupportedArchive', async () => {
    const archive = join(root, 'text.gz');
    await writeFile(archive, gzipSync(Buffer.from('just text\n'.repeat(500))));
    await expectRefused(archive, 'UnsupportedArchive');
  });

  it('a gzip inside a gzip is not inflated twice', async () => {
    const archive = join(root, 'double.tgz');
    await writeFile(archive, gzipSync(gzipSync(rawTar([{ path: 'a.txt', body: 'a' }]))));
    await expectRefused(archive, 'UnsupportedArchive');
  });

  it('a text file is UnsupportedArchive and the destination is never created', async () => {
    const archive = join(root, 'notes.tar');
    await writeFile(archive, 'not an archive\n'.repeat(100));
    await expectRefused(archive, 'UnsupportedArchive');
  });

  it('is cancelled by its AbortSignal and cleans up', async () => {
    const { src } = await sourceTree();
    const archive = await packDir(src, join(root, 'archives', 'a.tgz'), { gzip: true });
    const ac = new AbortController();
    ac.abort();
    await expect(unpackArchive(archive, dest, LIMITS, { signal: ac.signal })).rejects.toMatchObject({ code: 'Cancelled' });
    expect(await listTree(staging)).toEqual([]);
  });
});

