import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { create as tarCreate } from 'tar';
import { writeBrokenModel, writeLinearModel } from './models/onnx-writer.js';

// Writes small real ONNX models (no download) and their .tar.gz archives:
//   <out>/v1/model.onnx  y = x * 2 + 1
//   <out>/v2/model.onnx  y = x * 3 - 1
//   <out>/v3/model.onnx  not a model (the broken variant)
//   <out>/<v>.tar.gz     the directory above as an archive; its sha256 is printed.
// Usage: tsx scripts/make-models.ts [outDir]   (default ./models-out)

export const DEMO_MODELS = [
  { version: '1', w: 2, b: 1 },
  { version: '2', w: 3, b: -1 },
  { version: '3', broken: true },
] as const;

export async function makeModels(outDir: string): Promise<Array<{ version: string; archive: string; sha256: string }>> {
  const out = [];
  for (const m of DEMO_MODELS) {
    const dir = join(outDir, `v${m.version}`);
    mkdirSync(dir, { recursive: true });
    if ('broken' in m) writeBrokenModel(join(dir, 'model.onnx'));
    else writeLinearModel(join(dir, 'model.onnx'), { w: m.w, b: m.b });
    const archive = join(outDir, `v${m.version}.tar.gz`);
    await tarCreate({ gzip: true, cwd: dir, file: archive, portable: true }, ['model.onnx']);
    out.push({ version: m.version, archive, sha256: createHash('sha256').update(readFileSync(archive)).digest('hex') });
  }
  return out;
}

/** One more model for the demo: `<outDir>/<name>.tar.gz` holding y = x * w + b. */
export async function makeLinearArchive(outDir: string, name: string, w: number, b: number): Promise<{ archive: string; sha256: string }> {
  const dir = join(outDir, name);
  mkdirSync(dir, { recursive: true });
  writeLinearModel(join(dir, 'model.onnx'), { w, b });
  const archive = join(outDir, `${name}.tar.gz`);
  await tarCreate({ gzip: true, cwd: dir, file: archive, portable: true }, ['model.onnx']);
  return { archive, sha256: createHash('sha256').update(readFileSync(archive)).digest('hex') };
}

const isMain = process.argv[1] && resolve(process.argv[1]).replace(/\.[cm]?[jt]s$/, '') === new URL(import.meta.url).pathname.replace(/\.[cm]?[jt]s$/, '');
if (isMain) {
  const outDir = resolve(process.argv[2] ?? 'models-out');
  for (const m of await makeModels(outDir)) console.log(`${m.version}\t${m.sha256}\t${m.archive}`);
}
