import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_RANGE, unsupportedNode } from '../../shared/node-support.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** A node on PATH other than the project's own Node 24 (machines here come with Node 20). */
function otherNode(): string | undefined {
  const found = spawnSync('sh', ['-c', 'which -a node'], { encoding: 'utf8', env: { PATH: (process.env.PATH ?? '').split(':').filter((d) => !d.includes('node_modules')).join(':') } });
  return found.stdout.split('\n').map((l) => l.trim()).find((p) => p && spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim().split('.')[0] !== '24');
}

describe('supported Node.js', () => {
  it('the tests run on Node 24 LTS', () => {
    expect(process.versions.node.startsWith('24.')).toBe(true);
  });

  it("package.json's engines states the range the programs check at start", () => {
    const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8'));
    expect(pkg.engines.node).toBe(NODE_RANGE);
  });

  it('accepts 24.11 and later 24.x, refuses 20, 22, 24.10 and 25 with the range in the reason', () => {
    expect(unsupportedNode('modeld', '24.11.0')).toBeUndefined();
    expect(unsupportedNode('modeld', '24.22.3')).toBeUndefined();
    for (const v of ['20.20.2', '22.19.0', '24.10.0', '25.0.0']) {
      expect(unsupportedNode('modeld', v, '/usr/bin/node')).toBe(`modeld needs Node.js ${NODE_RANGE} (Node 24 LTS); /usr/bin/node is Node.js ${v}`);
    }
  });

  const old = otherNode();
  it.skipIf(!old)('modeld and modeld-controller on an older Node.js exit 1 with one clear line', () => {
    for (const [program, entry] of [['modeld', 'agent/cli/index.ts'], ['modeld-controller', 'controller/main.ts']] as const) {
      const r = spawnSync(old!, ['--import', 'tsx', entry, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^${program}: UnsupportedNode: ${program} needs Node.js >=24\\.11 <25`, 'm'));
    }
  });
});
