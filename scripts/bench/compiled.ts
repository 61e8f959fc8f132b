import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// The project compiled with tsc into a temp directory, laid out as the release is (dist/ beside a
// package.json and node_modules): processes whose memory is measured run from it, as on a node,
// not from the sources through tsx, whose compiler would add its own memory to theirs.

const ROOT = resolve(import.meta.dirname, '../..');

export interface Compiled {
  /** <root>/dist: agent/, scripts/, shared/ as .js. */
  dist: string;
  remove(): void;
}

export function compileProject(log: (s: string) => void): Compiled {
  const root = mkdtempSync(join(tmpdir(), 'modeld-bench-dist-'));
  const t0 = performance.now();
  const r = spawnSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(ROOT, 'tsconfig.json'), '--outDir', join(root, 'dist'), '--sourceMap', 'false'], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`tsc failed: ${r.stdout}${r.stderr}`);
  }
  copyFileSync(join(ROOT, 'package.json'), join(root, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  log(`compiled the project with tsc into ${root} (${Math.round(performance.now() - t0)} ms): measured processes run from it`);
  return { dist: join(root, 'dist'), remove: () => rmSync(root, { recursive: true, force: true }) };
}
