// Archive makers for install tests: real archives via the tar package, and hand-written ustar
// headers for the hostile forms tar's own creator refuses to write.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, readdir, lstat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface RawEntry {
  path: string;
  /** ustar typeflag: '0' file, '1' hard link, '2' symlink, '3' char dev, '4' block dev, '5' dir, '6' fifo... */
  type?: string;
  body?: Buffer | string;
  linkpath?: string;
  mode?: number;
  /** Declared size when it must differ from the body (bombs, lies). */
  size?: number;
  devmajor?: number;
  devminor?: number;
  /** Old v7 header: no "ustar" magic, only the checksum identifies it. */
  v7?: boolean;
}

const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, '0') + '\0';

/** One 512-byte header with a correct checksum. Names over 100 bytes are split into prefix/name. */
export function tarHeader(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  let name = e.path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
  const type = e.type ?? '0';
  const size = e.size ?? body.length;
  h.write(name, 0, 100, 'utf8');
  h.write(octal(e.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(1_700_000_000, 12), 136, 'latin1');
  h.write(type, 156, 'latin1');
  if (e.linkpath) h.write(e.linkpath, 157, 100, 'utf8');
  if (!e.v7) {
    h.write('ustar\0', 257, 'latin1');
    h.write('00', 263, 'latin1');
    h.write('root', 265, 'latin1');
    h.write('root', 297, 'latin1');
    h.write(octal(e.devmajor ?? 0, 8), 329, 'latin1');
    h.write(octal(e.devminor ?? 0, 8), 337, 'latin1');
    h.write(prefix, 345, 155, 'utf8');
  }
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

/** A whole tar stream from raw entries, ending with the two zero blocks unless `end` is false. */
export function rawTar(entries: RawEntry[], opts: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(tarHeader(e));
    if (e.body !== undefined) {
      const body = Buffer.from(e.body);
      parts.push(body, pad(body.length));
    }
  }
  if (opts.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export async function writeRawTar(file: string, entries: RawEntry[], opts: { gzip?: boolean; end?: boolean } = {}): Promise<string> {
  const tar = rawTar(entries, opts);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, opts.gzip ? gzipSync(tar) : tar);
  return file;
}

/** Files (and empty dirs for keys ending in '/') under `dir`. */
export async function makeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    if (rel.endsWith('/')) {
      await mkdir(p, { recursive: true });
      continue;
    }
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

/**
 * A real archive of `srcDir`'s contents made by GNU tar (entries named './...'; long names,
 * symlinks and hard links as GNU tar writes them). Not the tar package: its create() hangs now
 * and then (about 1 run in 20 here) on a tree holding both a symlink and a hard link.
 */
export async function packDir(srcDir: string, file: string, opts: { gzip?: boolean } = {}): Promise<string> {
  await mkdir(dirname(file), { recursive: true });
  await promisify(execFile)('tar', [opts.gzip ? '-czf' : '-cf', file, '-C', srcDir, '.']);
  return file;
}

/**
 * A gzip bomb: a tar entry declaring `declaredBytes` of zeros, as concatenated gzip members
 * (1 MiB of zeros compresses to ~1 KiB), so a GiB of content costs ~1 MB on disk and no time to make.
 */
export async function writeGzipBomb(file: string, opts: { declaredBytes: number; path?: string }): Promise<string> {
  const mib = 1024 * 1024;
  const zeros = gzipSync(Buffer.alloc(mib), { level: 9 });
  await mkdir(dirname(file), { recursive: true });
  const out = createWriteStream(file);
  out.write(gzipSync(tarHeader({ path: opts.path ?? 'weights.bin', size: opts.declaredBytes })));
  let left = opts.declaredBytes;
  for (; left >= mib; left -= mib) {
    if (!out.write(zeros)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  out.write(gzipSync(Buffer.alloc(left + pad(left).length + 1024))); // rest, padding, end blocks
  await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
  return file;
}

/** Relative paths of everything under `dir` (directories end with '/'), sorted. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d)) {
      const p = join(d, name);
      const st = await lstat(p);
      const rel = relative(dir, p);
      if (st.isDirectory()) {
        out.push(rel + '/');
        await walk(p);
      } else out.push(rel);
    }
  };
  await walk(dir);
  return out.sort();
}
