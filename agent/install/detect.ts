// Archive type by magic bytes, never by file name.
import { open } from 'node:fs/promises';
import { ModeldError } from '../errors.js';

export type ArchiveKind = 'tar' | 'tar.gz';

/** True when `block` (512 bytes) looks like a tar header: "ustar" magic, or a valid v7 checksum. */
export function looksLikeTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.subarray(257, 262).toString('latin1') === 'ustar') return true;
  return tarChecksumValid(block);
}

/** The header checksum: byte sum with the 8-byte checksum field counted as spaces (unsigned or signed). */
export function tarChecksumValid(block: Buffer): boolean {
  const field = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/g, '').trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  const stored = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  // An all-zero block "sums" to 256 with the spaces; it is an end marker, not a header.
  return unsigned !== 256 && (stored === unsigned || stored === signed);
}

export const isGzipMagic = (head: Buffer): boolean => head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;

export async function detectArchive(path: string): Promise<ArchiveKind> {
  const fh = await open(path, 'r');
  let head: Buffer;
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  return archiveKind(head);
}

/** The kind from an archive's first 512 bytes (fewer only when the archive is that short). */
export function archiveKind(head: Buffer): ArchiveKind {
  if (isGzipMagic(head)) return 'tar.gz';
  if (looksLikeTarHeader(head)) return 'tar';
  throw new ModeldError('UnsupportedArchive', `not a tar or tar.gz archive (first bytes: ${head.subarray(0, 8).toString('hex') || 'empty file'})`);
}
