// Hostile archives: each is refused whole, with a reason naming the entry, and nothing is
// written outside the staging destination (which is itself removed).
import { lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { unpackArchive } from '../../agent/install/unpack.js';
import { listTree, writeGzipBomb, writeRawTar, type RawEntry } from '../helpers/archives.js';

const LIMITS = { maxBytes: 64 * 1024 * 1024, maxEntries: 1000 };
let base: string;
let root: string;
let staging: string;
let dest: string;
let n = 0;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'modeld-hostile-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});
beforeEach(async () => {
  // root/secret.txt           a file an archive might try to overwrite or link to
  // root/archives/...         the archive under test
  // root/staging/job          the destination
  root = join(base, `case-${n++}`);
  staging = join(root, 'staging');
  dest = join(staging, 'job');
  await mkdir(staging, { recursive: true });
  await writeFile(join(root, 'secret.txt'), 'secret');
});

const exists = async (p: string) => (await lstat(p).catch(() => undefined)) !== undefined;

/** Unpack, expect a refusal naming `entry`, and check the tree outside staging is as before. */
async function expectRefused(entries: RawEntry[] | string, code: string, entry: string, escapes: string[] = [], opts: { gzip?: boolean; limits?: typeof LIMITS } = {}) {
  const archive = typeof entries === 'string' ? entries : await writeRawTar(join(root, 'archives', opts.gzip ? 'a.tgz' : 'a.tar'), entries, opts);
  const before = await listTree(root);
  const err = await unpackArchive(archive, dest, opts.limits ?? LIMITS).then(
    () => undefined,
    (e: unknown) => e as { code: string; message: string; details: Record<string, unknown> },
  );
  expect(err, 'the archive must be refused').toBeDefined();
  expect(err!.code).toBe(code);
  expect(err!.message).toContain(entry);
  expect(await listTree(root)).toEqual(before); // staging/job is gone, nothing new anywhere
  expect(await readFile(join(root, 'secret.txt'), 'utf8')).toBe('secret');
  expect((await stat(join(root, 'secret.txt'))).nlink).toBe(1);
  for (const p of escapes) expect(await exists(p), `${p} must not exist`).toBe(false);
  return err!;
}

describe('hostile archives are refused whole', () => {
  it("'..' path", async () => {
    await expectRefused([{ path: 'ok.txt', body: 'fine' }, { path: '../escape.txt', body: 'pwned' }], 'UnsafeArchive', '../escape.txt', [join(staging, 'escape.txt')]);
  });

  it("'..' in the middle of a path", async () => {
    await expectRefused([{ path: 'a/', type: '5' }, { path: 'a/../../escape.txt', body: 'pwned' }], 'UnsafeArchive', 'a/../../escape.txt', [join(root, 'escape.txt')]);
  });

  it("'..' hidden in a pax extended header", async () => {
    const rec = (k: string, v: string) => {
      const body = ` ${k}=${v}\n`;
      let len = body.length + 2;
      if (String(len).length + body.length !== len) len = String(len + 1).length + body.length;
      return `${len}${body}`;
    };
    await expectRefused(
      [{ path: 'PaxHeader/x', type: 'x', body: rec('path', '../pax-escape.txt') }, { path: 'innocent.txt', body: 'pwned' }],
      'UnsafeArchive', '../pax-escape.txt', [join(staging, 'pax-escape.txt')],
    );
  });

  it("'..' hidden in a GNU long name", async () => {
    await expectRefused(
      [{ path: '././@LongLink', type: 'L', body: '../../gnu-escape.txt\0' }, { path: 'innocent.txt', body: 'pwned' }],
      'UnsafeArchive', '../../gnu-escape.txt', [join(root, 'gnu-escape.txt')],
    );
  });

  it('absolute path', async () => {
    const target = join(root, 'abs-escape.txt');
    await expectRefused([{ path: target, body: 'pwned' }], 'UnsafeArchive', target, [target]);
  });

  it('symlink to an absolute path outside, then a file through it', async () => {
    const outside = join(root, 'outside');
    await mkdir(outside);
    await expectRefused(
      [{ path: 'link', type: '2', linkpath: outside }, { path: 'link/pwned.txt', body: 'pwned' }],
      'UnsafeArchive', 'link', [join(outside, 'pwned.txt')],
    );
  });

  it("symlink out via '..'", async () => {
    await expectRefused(
      [{ path: 'dir/', type: '5' }, { path: 'dir/link', type: '2', linkpath: '../../../secret.txt' }, { path: 'dir/link', body: 'overwrite' }],
      'UnsafeArchive', 'dir/link',
    );
  });

  it('symlink that escapes only once a later link exists (x -> y/.., then y -> .)', async () => {
    const err = await expectRefused(
      [{ path: 'x', type: '2', linkpath: 'y/..' }, { path: 'y', type: '2', linkpath: '.' }],
      'UnsafeArchive', "'x'",
    );
    expect(err.message).toMatch(/leaves the archive root/);
  });

  it('a file written through an inside symlink is refused too', async () => {
    await expectRefused(
      [{ path: 'real/', type: '5' }, { path: 'alias', type: '2', linkpath: 'real' }, { path: 'alias/f.txt', body: 'x' }],
      'UnsafeArchive', 'alias/f.txt',
    );
  });

  it('hard link to a file outside', async () => {
    await expectRefused([{ path: 'hl', type: '1', linkpath: '../../secret.txt' }], 'UnsafeArchive', 'hl');
  });

  it('hard link to an absolute path', async () => {
    await expectRefused([{ path: 'hl', type: '1', linkpath: join(root, 'secret.txt') }], 'UnsafeArchive', 'hl');
  });

  it('hard link to a name not yet extracted', async () => {
    await expectRefused([{ path: 'hl', type: '1', linkpath: 'later.txt' }, { path: 'later.txt', body: 'x' }], 'UnsafeArchive', 'hl');
  });

  it('character device', async () => {
    await expectRefused([{ path: 'ok.txt', body: 'x' }, { path: 'null', type: '3', devmajor: 1, devminor: 3 }], 'UnsafeArchive', 'null');
  });

  it('block device', async () => {
    await expectRefused([{ path: 'sda', type: '4', devmajor: 8, devminor: 0 }], 'UnsafeArchive', 'sda');
  });

  it('FIFO', async () => {
    await expectRefused([{ path: 'pipe', type: '6' }], 'UnsafeArchive', 'pipe');
  });

  it('other entry types (contiguous file, sparse file)', async () => {
    await expectRefused([{ path: 'contig', type: '7', body: 'x' }], 'UnsafeArchive', 'contig');
    await expectRefused([{ path: 'sparse', type: 'S', body: 'x' }], 'UnsafeArchive', 'sparse');
  });

  it('a file under a path that is a file', async () => {
    await expectRefused([{ path: 'f', body: 'x' }, { path: 'f/g', body: 'y' }], 'UnsafeArchive', 'f/g');
  });

  it('the reserved completion marker', async () => {
    await expectRefused([{ path: '.modeld-complete', body: '{"completedAt":1}' }], 'UnsafeArchive', '.modeld-complete');
  });

  it('too many entries', async () => {
    const entries = Array.from({ length: 12 }, (_, i) => ({ path: `f${i}.txt`, body: 'x' }));
    await expectRefused(entries, 'TooManyEntries', 'f10.txt', [], { limits: { maxBytes: LIMITS.maxBytes, maxEntries: 10 } });
  });

  it('too large', async () => {
    const entries = [{ path: 'a.bin', body: Buffer.alloc(600 * 1024) }, { path: 'b.bin', body: Buffer.alloc(600 * 1024) }];
    await expectRefused(entries, 'ArchiveTooLarge', 'b.bin', [], { gzip: true, limits: { maxBytes: 1024 * 1024, maxEntries: 10 } });
  });

  it('gzip bomb: 1 GiB of zeros in ~1 MB stops before inflating it', async () => {
    const bomb = await writeGzipBomb(join(root, 'archives', 'bomb.tgz'), { declaredBytes: 1024 * 1024 * 1024, path: 'weights.bin' });
    expect((await stat(bomb)).size).toBeLessThan(4 * 1024 * 1024);
    const err = await expectRefused(bomb, 'ArchiveTooLarge', 'weights.bin');
    expect(err.details.inflatedBytes as number).toBeLessThan(8 * 1024 * 1024);
  });
});
