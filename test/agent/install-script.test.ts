import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { canListenForNotify, startNotifySocket } from '../helpers/notify-socket.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// scripts/build-release.sh and scripts/install.sh against a scratch root folder (--root): the
// tarball's contents, the installed layout, the packed daemon actually starting (READY) from the
// scratch root, upgrade, uninstall, purge, and refusals. Not tried here: a real systemd boot
// (useradd, systemctl). The arm64 and armv7 tarballs are booted under qemu in release-smoke.test.ts.

const ROOT = resolve(import.meta.dirname, '../..');
const INSTALL = join(ROOT, 'scripts/install.sh');
const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const arch = process.arch === 'arm' ? 'armv7' : process.arch;
let work: string;
let tarball: string;

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 300_000, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const install = (...args: string[]) => sh(INSTALL, args);
/**
 * The release without node_modules/ and node/ (install.sh's checks do not need them, and a full
 * tarball takes a minute to unpack and pack on a loaded machine), changed by `edit` before its
 * SHA256SUMS are made again and by `damage` after; installed with `--node` (this Node 24).
 */
function miniRelease(edit: (top: string) => void = () => {}, damage: (top: string) => void = () => {}): string {
  const dir = mkdtempSync(join(work, 'mini-'));
  execFileSync('tar', ['-xzf', tarball, '-C', dir, '--exclude', `modeld-${version}/node_modules`, '--exclude', `modeld-${version}/node`]);
  const top = join(dir, `modeld-${version}`);
  edit(top);
  const sums = execFileSync('sh', ['-c', "find . -type f ! -name RELEASE ! -name SHA256SUMS -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum"], { cwd: top, encoding: 'utf8' });
  writeFileSync(join(top, 'SHA256SUMS'), sums);
  const rel = join(top, 'RELEASE');
  writeFileSync(rel, readFileSync(rel, 'utf8').replace(/^sha256sums=.*$/m, `sha256sums=${createHash('sha256').update(sums).digest('hex')}`));
  damage(top);
  const out = `${dir}.tar.gz`;
  execFileSync('tar', ['-czf', out, '-C', dir, `modeld-${version}`]);
  rmSync(dir, { recursive: true, force: true });
  return out;
}
const setField = (top: string, key: string, value: string) => writeFileSync(join(top, 'RELEASE'), readFileSync(join(top, 'RELEASE'), 'utf8').replace(new RegExp(`^${key}=.*$`, 'm'), `${key}=${value}`));
const freshRoot = () => mkdtempSync(join(work, 'root-'));

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'modeld-install-'));
  const r = sh(join(ROOT, 'scripts/build-release.sh'), ['--out', join(work, 'out')], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new Error(`build-release failed: ${r.stderr}`);
  tarball = join(work, 'out', `modeld-${version}-linux-${arch}.tar.gz`);
}, 900_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the release tarball', () => {
  it('holds the agent, its production dependencies only, the unit, the template and the installer', () => {
    const list = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }).split('\n');
    const top = `modeld-${version}/`;
    expect(list.every((p) => p === '' || p.startsWith(top))).toBe(true);
    for (const f of ['dist/agent/cli/index.js', 'dist/agent/runtime/onnx-server.js', 'dist/shared/index.js', 'bin/modeld', 'RELEASE', 'SHA256SUMS', 'node/bin/node', 'package.json', 'systemd/modeld.service', 'systemd/modeld-host.service', 'dist/agent/host/main.js', 'systemd/config.example.yaml', 'scripts/install.sh', 'docs/operations.md', 'node_modules/better-sqlite3/build/Release/better_sqlite3.node', 'node_modules/mqtt/package.json', 'node_modules/prom-client/package.json']) {
      expect(list, f).toContain(top + f);
    }
    const has = (prefix: string) => list.some((p) => p.startsWith(top + prefix));
    // No dev dependencies, no controller-only ones, no tests or controller code.
    for (const p of ['node_modules/vitest/', 'node_modules/typescript/', 'node_modules/tsx/', 'node_modules/aedes/', 'node_modules/@kubernetes/', 'dist/test/', 'dist/controller/', 'dist/scripts/']) expect(has(p), p).toBe(false);
    // Install-time only packages, type declarations, and build leftovers: none.
    for (const p of ['node_modules/prebuild-install/', 'node_modules/adm-zip/', 'node_modules/global-agent/', 'node_modules/@types/', 'node_modules/better-sqlite3/src/', 'node_modules/better-sqlite3/deps/', 'node_modules/better-sqlite3/build/Release/obj']) expect(has(p), p).toBe(false);
    expect(list.filter((p) => /\.(a|o|obj|pdb|lib)$/.test(p) || p.endsWith('test_extension.node'))).toEqual([]);
    expect(list.filter((p) => p.includes('better-sqlite3/build/') && !p.endsWith('/'))).toEqual([top + 'node_modules/better-sqlite3/build/Release/better_sqlite3.node']);
    // onnxruntime for this arch only.
    const ort = list.filter((p) => p.includes('onnxruntime-node/bin/napi-v6/') && p.endsWith('.node'));
    expect(ort.length).toBeGreaterThan(0);
    expect(ort.every((p) => p.includes(`/linux/${process.arch}/`))).toBe(true);
    // onnxruntime-web: only the files Node opens for a WASM session; its bundled dependencies not at all.
    const web = list.filter((p) => p.startsWith(`${top}node_modules/onnxruntime-web/`) && !p.endsWith('/')).map((p) => p.slice(`${top}node_modules/onnxruntime-web/`.length));
    expect(web.sort()).toEqual(['dist/ort-wasm-simd-threaded.mjs', 'dist/ort-wasm-simd-threaded.wasm', 'dist/ort.node.min.mjs', 'package.json']);
    for (const p of ['node_modules/protobufjs/', 'node_modules/flatbuffers/', 'node_modules/guid-typescript/']) expect(has(p), p).toBe(false);
    expect(has('node_modules/onnxruntime-common/package.json')).toBe(true);
  });

  it('RELEASE records arch, Node ABI, the bundled Node, versions, the glibc floor and the checksums', () => {
    const dir = mkdtempSync(join(work, 'rel-'));
    execFileSync('tar', ['-xzf', tarball, '-C', dir]);
    const top = join(dir, `modeld-${version}`);
    const rel = Object.fromEntries(readFileSync(join(top, 'RELEASE'), 'utf8').trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)));
    const bundled = spawnSync(join(top, 'node/bin/node'), ['-p', 'process.versions.node + " " + process.versions.modules'], { encoding: 'utf8' }).stdout.trim().split(' ');
    expect(rel).toMatchObject({ version, arch, node_abi: bundled[1], node: `bundled ${bundled[0]}`, better_sqlite3: expect.stringMatching(/^\d+\.\d+\.\d+$/), onnxruntime_node: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect(bundled[0]).toMatch(/^24\./);
    expect(rel.glibc_floor).toMatch(/^2\.\d+$/);
    const sums = readFileSync(join(top, 'SHA256SUMS'), 'utf8');
    expect(rel.sha256sums).toBe(createHash('sha256').update(sums).digest('hex'));
    expect(sums).toMatch(/^[0-9a-f]{64} {2}node_modules\/better-sqlite3\/build\/Release\/better_sqlite3\.node$/m);
    expect(spawnSync('sha256sum', ['--check', '--quiet', '--strict', 'SHA256SUMS'], { cwd: top }).status).toBe(0);
  });
});

describe('install.sh --root', () => {
  it('installs the layout: tree, command, config from the template, unit', () => {
    const root = freshRoot();
    const r = install('--root', root, tarball);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/user modeld not created \(--root\)/);
    expect(r.stdout).toMatch(/systemctl skipped \(--root\)/);
    expect(existsSync(join(root, 'opt/modeld/dist/agent/cli/index.js'))).toBe(true);
    expect(readFileSync(join(root, 'opt/modeld/bin/modeld'), 'utf8')).toContain(`NODE="\${MODELD_NODE:-`);
    const link = join(root, 'usr/local/bin/modeld');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).not.toMatch(/^\//); // relative: resolves inside the root too
    expect(readFileSync(join(root, 'etc/modeld/config.yaml'), 'utf8')).toBe(readFileSync(join(ROOT, 'systemd/config.example.yaml'), 'utf8'));
    expect(lstatSync(join(root, 'etc/modeld/config.yaml')).mode & 0o777).toBe(0o640);
    expect(readFileSync(join(root, 'etc/systemd/system/modeld.service'), 'utf8')).toBe(readFileSync(join(ROOT, 'systemd/modeld.service'), 'utf8'));
    expect(readFileSync(join(root, 'etc/systemd/system/modeld-host.service'), 'utf8')).toBe(readFileSync(join(ROOT, 'systemd/modeld-host.service'), 'utf8'));
    // The command runs through the link, and checks the installed template as a valid config.
    const help = sh(link, ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: modeld/);
    const doc = sh(link, ['--config', join(root, 'etc/modeld/config.yaml'), 'doctor', '--json', '--timeout', '500'], { env: { MODELD_STATE_DIR: join(root, 'var/lib/modeld'), MODELD_GATEWAY__PORT: '0', MODELD_ADMIN__METRICS_PORT: '0' } });
    const checks = JSON.parse(doc.stdout).checks as Array<{ name: string; status: string }>;
    expect(checks.find((c) => c.name === 'config')?.status).toBe('ok');
    expect(checks.find((c) => c.name === 'runtime:onnx (built in)')?.status).toBe('ok'); // the packed native binary loads
    // The pruned onnxruntime-web still creates and runs a session (what an armv7 board uses).
    const wasm = sh(link, ['--config', join(root, 'etc/modeld/config.yaml'), 'doctor', '--json', '--timeout', '500'], {
      env: { MODELD_STATE_DIR: join(root, 'var/lib/modeld'), MODELD_GATEWAY__PORT: '0', MODELD_ADMIN__METRICS_PORT: '0', MODELD_SERVING__ONNX_BACKEND: 'wasm' },
    });
    const onnx = (JSON.parse(wasm.stdout).checks as Array<{ name: string; status: string; message: string }>).find((c) => c.name === 'runtime:onnx (built in)');
    expect(onnx, wasm.stdout + wasm.stderr).toMatchObject({ status: 'ok', message: expect.stringMatching(/onnxruntime-web \S+ WASM backend serves .*a probe model answered/) });
    // MODELD_NODE picks the node the launcher runs, and is not mistaken for a config key.
    const viaEnv = sh(link, ['--config', join(root, 'etc/modeld/config.yaml'), 'doctor', '--json', '--timeout', '500'], { env: { MODELD_NODE: join(root, 'opt/modeld/node/bin/node'), MODELD_STATE_DIR: join(root, 'var/lib/modeld'), MODELD_GATEWAY__PORT: '0', MODELD_ADMIN__METRICS_PORT: '0' } });
    expect((JSON.parse(viaEnv.stdout).checks as Array<{ name: string; status: string }>).find((c) => c.name === 'config')?.status).toBe('ok');
    const bogus = sh(link, ['--help'], { env: { MODELD_NODE: join(work, 'no-such-node') } });
    expect(bogus.code).not.toBe(0);
  });

  it('the installed unit passes systemd-analyze verify with the installed launcher', (ctx) => {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
      console.warn('skipped: systemd-analyze is not installed');
      return ctx.skip();
    }
    const root = freshRoot();
    expect(install('--root', root, '--prefix', '/srv/modeld', tarball).code).toBe(0);
    const unit = readFileSync(join(root, 'etc/systemd/system/modeld.service'), 'utf8');
    const hostUnit = readFileSync(join(root, 'etc/systemd/system/modeld-host.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=\/srv\/modeld\/bin\/modeld run$/m);
    expect(hostUnit).toMatch(/^ExecStart=\/srv\/modeld\/bin\/modeld host$/m);
    const dir = mkdtempSync(join(work, 'unit-'));
    writeFileSync(join(dir, 'modeld.service'), unit.replace(/^ExecStart=\/srv/m, `ExecStart=${root}/srv`));
    writeFileSync(join(dir, 'modeld-host.service'), hostUnit.replace(/^ExecStart=\/srv/m, `ExecStart=${root}/srv`));
    const r = sh('systemd-analyze', ['verify', join(dir, 'modeld.service'), join(dir, 'modeld-host.service')]);
    expect(r.stderr + r.stdout).toBe('');
    expect(r.code).toBe(0);
  });

  it('the installed daemon starts from the scratch root and says READY', async (ctx) => {
    if (!canListenForNotify()) {
      console.warn('skipped: python3 is needed for the AF_UNIX datagram notify socket');
      return ctx.skip();
    }
    const root = freshRoot();
    expect(install('--root', root, tarball).code).toBe(0);
    const sock = await startNotifySocket(join(work, `n-${Date.now()}.sock`));
    const config = join(root, 'etc/modeld/config.yaml');
    writeFileSync(
      config,
      stringify({
        node: { name: 'edge-inst', address: '127.0.0.1' },
        broker: { url: `mqtt://127.0.0.1:${await freePort()}` },
        stateDir: join(root, 'var/lib/modeld'),
        gateway: { bind: '127.0.0.1', port: 0 },
        admin: { socket: join(root, 'run/modeld/modeld.sock'), metricsPort: 0 },
      }),
    );
    mkdirSync(join(root, 'run/modeld'), { recursive: true });
    const daemon = spawnTree(join(root, 'opt/modeld/bin/modeld'), ['--config', config, 'run'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: sock.path, MODELD_CONFIG: '' },
    });
    const child = daemon.child;
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      await waitFor(() => sock.messages.some((m) => m.fields.READY === '1') || child.exitCode !== null, WAIT_MS, 'READY from the installed daemon');
      expect(stderr).toBe('');
      // exec in the launcher: the main pid is node itself.
      expect(sock.messages.find((m) => m.fields.READY === '1')!.fields.MAINPID).toBe(String(child.pid));
      expect(existsSync(join(root, 'var/lib/modeld/state.db'))).toBe(true);
      child.kill('SIGTERM');
      expect((await daemon.exited).code).toBe(0);
    } finally {
      await daemon.end();
      await sock.stop();
    }
  });

  it('an upgrade replaces the tree and keeps the config; uninstall keeps state and config; purge removes them', () => {
    const root = freshRoot();
    expect(install('--root', root, tarball).code).toBe(0);
    writeFileSync(join(root, 'etc/modeld/config.yaml'), 'node:\n  name: mine\n');
    writeFileSync(join(root, 'opt/modeld/stray-file'), 'old');
    mkdirSync(join(root, 'var/lib/modeld/models'), { recursive: true });
    writeFileSync(join(root, 'var/lib/modeld/state.db'), 'keep me');

    const up = install('--root', root, tarball);
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/kept .*config\.yaml/);
    expect(readFileSync(join(root, 'etc/modeld/config.yaml'), 'utf8')).toBe('node:\n  name: mine\n');
    expect(existsSync(join(root, 'opt/modeld/stray-file'))).toBe(false);
    expect(readdirSync(join(root, 'opt')).sort()).toEqual(['modeld']); // no .new/.old left

    const un = install('--root', root, '--uninstall');
    expect(un.code).toBe(0);
    for (const p of ['opt/modeld', 'etc/systemd/system/modeld.service', 'etc/systemd/system/modeld-host.service', 'usr/local/bin/modeld']) expect(existsSync(join(root, p)), p).toBe(false);
    expect(readFileSync(join(root, 'var/lib/modeld/state.db'), 'utf8')).toBe('keep me');
    expect(existsSync(join(root, 'etc/modeld/config.yaml'))).toBe(true);

    const purge = install('--root', root, '--uninstall', '--purge');
    expect(purge.code).toBe(0);
    expect(existsSync(join(root, 'var/lib/modeld'))).toBe(false);
    expect(existsSync(join(root, 'etc/modeld'))).toBe(false);
  });

  it('refuses bad input with a one-line reason and a non-zero exit', () => {
    const root = freshRoot();
    const none = install('--root', root);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/which tarball/);
    expect(install('--root', root, join(work, 'missing.tar.gz')).stderr).toMatch(/cannot read tarball/);
    const junk = join(work, 'junk.tar.gz');
    writeFileSync(junk, 'not a tarball');
    expect(install('--root', root, junk)).toMatchObject({ code: 1, stderr: expect.stringMatching(/not a gzip tar archive/) });
    expect(install('--root', root, '--purge')).toMatchObject({ code: 1, stderr: expect.stringMatching(/--purge goes with --uninstall/) });
    expect(install('--root', root, '--prefix', '/', tarball).code).toBe(1);
    expect(install('--root', root, '--bogus').code).toBe(2);

    // A release for another arch: refused unless --force.
    const node = ['--node', process.execPath];
    const otherTar = miniRelease((t) => setField(t, 'arch', 'mips'));
    expect(install('--root', root, ...node, otherTar)).toMatchObject({ code: 1, stderr: expect.stringMatching(/tarball is for mips, this machine is/) });
    expect(install('--root', root, ...node, '--force', otherTar).code).toBe(0);

    // Node of another ABI (a Node 24 build for other native parts), and too old.
    const mini = miniRelease();
    const abiNode = join(work, 'node-abi');
    writeFileSync(abiNode, '#!/bin/sh\necho 24.12.0 999\n');
    chmodSync(abiNode, 0o755);
    expect(install('--root', freshRoot(), '--node', abiNode, mini)).toMatchObject({ code: 1, stderr: expect.stringMatching(/has Node ABI 999; this release's native parts are built for ABI \d+/) });
    const fakeNode = join(work, 'node18');
    writeFileSync(fakeNode, '#!/bin/sh\necho 18.19.0\n');
    chmodSync(fakeNode, 0o755);
    expect(install('--root', freshRoot(), '--node', fakeNode, mini)).toMatchObject({ code: 1, stderr: expect.stringMatching(/node 18\.19\.0 .* too old/) });
    // A release whose native parts need a newer glibc than this machine's.
    const glibc = miniRelease((t) => setField(t, 'glibc_floor', '9.99'));
    expect(install('--root', freshRoot(), ...node, glibc)).toMatchObject({ code: 1, stderr: expect.stringMatching(/this machine has glibc 2\.\d+; this release's native parts need glibc >= 9\.99/) });
    // A damaged tarball: a file changed after the build; SHA256SUMS itself changed.
    const damaged = miniRelease(undefined, (t) => writeFileSync(join(t, 'dist/agent/cli/index.js'), 'tampered'));
    expect(install('--root', freshRoot(), ...node, damaged)).toMatchObject({ code: 1, stderr: expect.stringMatching(/is damaged: dist\/agent\/cli\/index\.js differ from its SHA256SUMS/) });
    const forged = miniRelease(undefined, (t) => writeFileSync(join(t, 'SHA256SUMS'), ''));
    expect(install('--root', freshRoot(), ...node, forged)).toMatchObject({ code: 1, stderr: expect.stringMatching(/is damaged: its SHA256SUMS does not match RELEASE/) });
    // A downgrade over an installed release: refused, the installed one left as it was.
    const upgraded = freshRoot();
    expect(install('--root', upgraded, ...node, mini).code).toBe(0);
    const older = miniRelease((t) => setField(t, 'version', '0.0.1'));
    expect(install('--root', upgraded, ...node, older)).toMatchObject({ code: 1, stderr: expect.stringMatching(new RegExp(`refusing to downgrade modeld ${version.replace(/\./g, '\\.')} to 0\\.0\\.1`)) });
    expect(readFileSync(join(upgraded, 'opt/modeld/RELEASE'), 'utf8')).toMatch(new RegExp(`^version=${version}$`, 'm'));
    // The same version again, and a newer one, are not downgrades.
    expect(install('--root', upgraded, ...node, mini).code).toBe(0);
    expect(install('--root', upgraded, ...node, miniRelease((t) => setField(t, 'version', '99.0.0'))).code).toBe(0);
    // Nothing was installed by the refusals into a fresh root.
    const clean = freshRoot();
    install('--root', clean, junk);
    expect(readdirSync(clean)).toEqual([]);
  });
});
