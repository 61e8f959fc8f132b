import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// `npm test` starts with scripts/test-deps.sh: the Debian packages the tests use as peers are
// installed when it runs as root, or named exactly when it does not. Run here on a PATH where
// those tools are missing, with stand-ins for `id` and `apt-get` that record what they were asked.

const SCRIPT = resolve(import.meta.dirname, '../../scripts/test-deps.sh');
let bin: string;

beforeEach(() => {
  bin = mkdtempSync(join(tmpdir(), 'test-deps-'));
  // Only what the script itself needs: bash and its builtins, plus the stand-ins.
  for (const tool of ['bash', 'cat']) symlinkSync(spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim(), join(bin, tool));
});
afterEach(() => rmSync(bin, { recursive: true, force: true }));

function standIn(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!${join(bin, 'bash')}\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

const run = () => spawnSync(join(bin, 'bash'), [SCRIPT], { encoding: 'utf8', env: { PATH: bin } });

describe('scripts/test-deps.sh', () => {
  it('as a user, names the missing packages and the exact apt-get line, and fails', () => {
    standIn('id', 'echo 1000');
    const r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('sudo apt-get install -y --no-install-recommends mosquitto mosquitto-clients python3 systemd tinyproxy prometheus zsh qemu-user-static g++-aarch64-linux-gnu g++-arm-linux-gnueabihf umoci');
  });

  it('as root, installs just what is missing from Debian', () => {
    standIn('id', 'echo 0');
    standIn('apt-get', `echo "$@" >> ${join(bin, 'apt.log')}`);
    standIn('mosquitto', 'exit 0'); // present: not asked for
    const r = run();
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(bin, 'apt.log'), 'utf8').trim().split('\n')).toEqual(['update -qq', 'install -y -qq --no-install-recommends mosquitto-clients python3 systemd tinyproxy prometheus zsh qemu-user-static g++-aarch64-linux-gnu g++-arm-linux-gnueabihf umoci']);
  });

  it('with everything there, does nothing', () => {
    standIn('id', 'echo 1000');
    for (const t of ['mosquitto', 'mosquitto_pub', 'python3', 'systemd-analyze', 'tinyproxy', 'promtool', 'zsh', 'qemu-aarch64-static', 'aarch64-linux-gnu-g++', 'arm-linux-gnueabihf-g++', 'umoci']) standIn(t, 'exit 0');
    expect(run()).toMatchObject({ status: 0, stderr: '' });
  });
});
