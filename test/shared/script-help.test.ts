import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// `--help` of the shell scripts is their opening comment, all of it and nothing after it.

const ROOT = resolve(import.meta.dirname, '../..');

describe('scripts --help', () => {
  for (const script of ['scripts/build-release.sh', 'scripts/install.sh']) {
    it(`${script} --help prints its opening comment and exits 0`, () => {
      const path = resolve(ROOT, script);
      const lines = readFileSync(path, 'utf8').split('\n');
      const end = lines.findIndex((l, i) => i > 0 && !l.startsWith('#'));
      const expected = lines.slice(1, end).map((l) => l.replace(/^# ?/, '')).join('\n') + '\n';
      const r = spawnSync('bash', [path, '--help'], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(expected);
      expect(r.stdout).not.toContain('set -euo pipefail');
    });
  }
});
