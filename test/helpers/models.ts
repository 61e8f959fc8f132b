import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { create as tarCreate } from 'tar';
import { writeBrokenModel, writeLinearModel, type LinearModelOptions } from '../../scripts/models/onnx-writer.js';

export { writeBrokenModel, writeIdentityModel, writeLinearModel } from '../../scripts/models/onnx-writer.js';

/**
 * Writes a .tar.gz at `archivePath` holding model.onnx (y = x * w + b, or a broken file with
 * `broken: true`); returns its sha256 (hex) and size.
 */
export async function makeModelArchive(
  archivePath: string,
  opts: (Partial<LinearModelOptions> & { w: number; b: number }) | { broken: true },
): Promise<{ path: string; sha256: string; size: number }> {
  const work = mkdtempSync(join(tmpdir(), 'modeld-archive-'));
  try {
    const file = join(work, 'model.onnx');
    if ('broken' in opts) writeBrokenModel(file);
    else writeLinearModel(file, opts);
    mkdirSync(dirname(archivePath), { recursive: true });
    await tarCreate({ gzip: true, cwd: work, file: archivePath, portable: true }, [basename(file)]);
    const bytes = readFileSync(archivePath);
    return { path: archivePath, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A version directory as the installer leaves it: `<dir>/model.onnx`. */
export function makeModelDir(dir: string, opts: (Partial<LinearModelOptions> & { w: number; b: number }) | { broken: true }): string {
  mkdirSync(dir, { recursive: true });
  if ('broken' in opts) writeBrokenModel(join(dir, 'model.onnx'));
  else writeLinearModel(join(dir, 'model.onnx'), opts);
  return dir;
}
