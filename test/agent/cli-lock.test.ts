import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireStateLock } from '../../agent/admin/state-lock.js';
import type { StatusReport } from '../../agent/admin/status-view.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { expectOneLineError, inferenceModel, runCli, writeConfig, writeYaml, offlineNodeConfig } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// One writer of the state directory at a time: daemon running -> the CLI goes through its API;
// not running -> the CLI takes the lock. Seeding an archive the daemon is downloading at that
// moment ends with one verified blob.

let work: string;
let config: Record<string, unknown> & { stateDir: string };
let configFile: string;
let daemon: AgentProcess | undefined;
let server: ChaosServer | undefined;

const cli = (...args: string[]) => runCli(configFile, args);

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-cli-lock-'));
  config = await offlineNodeConfig(work, {
    fetch: { stallTimeoutMs: 8000, backoffBaseMs: 50, backoffMaxMs: 200, progressIntervalMs: 100 },
  });
  configFile = writeConfig(config);
});

afterEach(async () => {
  await daemon?.end();
  daemon = undefined;
  await server?.stop();
  server = undefined;
  rmSync(work, { recursive: true, force: true });
});

describe('the state directory has one writer', () => {
  it('modeld run waits for a CLI command holding the state directory, then refuses to start', async () => {
    mkdirSync(config.stateDir, { recursive: true });
    const lock = acquireStateLock(join(config.stateDir, 'modeld.lock'), { kind: 'cli', command: 'modeld seed' });
    try {
      const r = await runCli(configFile, ['run', '--no-serve']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`modeld: StateLocked: the state directory is in use by modeld seed (pid ${process.pid}) (lock ${join(config.stateDir, 'modeld.lock')})\n`);
    } finally {
      lock.release();
    }
  });

  it('a CLI command refuses the state directory while another CLI command holds it', async () => {
    mkdirSync(config.stateDir, { recursive: true });
    const lock = acquireStateLock(join(config.stateDir, 'modeld.lock'), { kind: 'cli', command: 'modeld verify' });
    try {
      const archive = await makeModelArchive(join(work, 'a.tar.gz'), { w: 1, b: 0 });
      const r = await cli('seed', archive.path, '--name', 'lin', '--version', '1');
      expect(r.code).toBe(1);
      expect(expectOneLineError(r)).toMatch(/^modeld: StateLocked: the state directory is in use by modeld verify \(pid \d+\)/);
      expect(existsSync(join(config.stateDir, 'blobs'))).toBe(false);
    } finally {
      lock.release();
    }
  });

  it('while the daemon holds the state directory, a CLI that cannot reach it refuses to write (exit 3) and status reads the store', async () => {
    daemon = startAgentProcess(config, ['--no-serve']);
    await waitFor(async () => (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).daemon, 60_000, 'the daemon to answer');
    // The same state directory, the wrong socket: as if the socket were gone.
    const lost = writeConfig({ ...config, admin: { socket: join(work, 'elsewhere.sock') } }, join(work, 'lost.yaml'));
    const archive = await makeModelArchive(join(work, 'a.tar.gz'), { w: 1, b: 0 });
    const seed = await runCli(lost, ['seed', archive.path, '--name', 'lin', '--version', '1']);
    expect(seed.code).toBe(3);
    expect(expectOneLineError(seed)).toMatch(/^modeld: DaemonNotRunning: modeld run \(pid \d+\) holds .* but does not answer on .*elsewhere\.sock$/);
    const apply = await runCli(lost, ['apply', '-f', writeYaml(join(work, 'm.yaml'), inferenceModel('lin', [{ version: '1', sha256: archive.sha256 }]))]);
    expect(apply.code).toBe(3);
    const status = await runCli(lost, ['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ daemon: false, models: [] });
    // Nothing was written behind the daemon's back.
    expect(existsSync(join(config.stateDir, 'blobs', 'sha256'))).toBe(false);
  });

  it('seeding the archive the daemon is downloading at that moment ends with one verified blob', async () => {
    const archive = await makeModelArchive(join(work, 'big.tar.gz'), { w: 5, b: 1 });
    server = await startChaosServer({ body: readFileSync(archive.path) });
    const half = Math.floor(server.body.length / 2);
    // The first request stalls half-way; the retry after the stall timeout resumes and finishes.
    server.script({ kind: 'stall', atByte: half });
    server.fallback = { kind: 'ok' };
    daemon = startAgentProcess(config, ['--no-serve']);
    const spec = inferenceModel('lin', [{ version: '1', sha256: archive.sha256, url: server.urlFor('/lin-1.tar.gz') }]);
    const applied = await cli('apply', '-f', writeYaml(join(work, 'm.yaml'), spec));
    expect(applied.code, applied.stderr).toBe(0);
    await waitFor(() => server!.bytesSent() >= half, 60_000, 'the download to be half-way');
    const status = JSON.parse((await cli('status', '--json')).stdout) as StatusReport;
    expect(status.models[0].phase).toBe('Downloading');

    const seeded = await cli('seed', archive.path, '--name', 'lin', '--version', '1', '--json');
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(JSON.parse(seeded.stdout)).toMatchObject({ sha256: archive.sha256, daemon: true, verifiedAgainst: 'spec' });

    await waitFor(
      async () => (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0]?.phase === 'Installed',
      120_000,
      'the model to be installed',
    );
    // One blob file, with the right bytes, one row; no partial download left.
    const root = join(config.stateDir, 'blobs', 'sha256');
    const files = readdirSync(root).flatMap((ab) => readdirSync(join(root, ab)).map((rest) => join(root, ab, rest)));
    expect(files).toEqual([join(root, archive.sha256.slice(0, 2), archive.sha256.slice(2))]);
    expect(createHash('sha256').update(readFileSync(files[0])).digest('hex')).toBe(archive.sha256);
    await waitFor(() => readdirSync(join(config.stateDir, 'blobs', 'partial')).length === 0, WAIT_MS, 'no partial files');
    const db = new Database(join(config.stateDir, 'state.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT sha256 FROM blobs').all()).toEqual([{ sha256: archive.sha256 }]);
    } finally {
      db.close();
    }
    const verify = await cli('verify');
    expect(verify.code, verify.stdout).toBe(0);
  }, 240_000);

  it('Ctrl-C during a seed without the daemon leaves no partial copy and no lock', async () => {
    // A large sparse "archive" (gzip magic, then zeros) so the copy is still running when interrupted.
    const big = join(work, 'big.tar.gz');
    const fd = openSync(big, 'w');
    writeSync(fd, Buffer.from([0x1f, 0x8b]));
    closeSync(fd);
    truncateSync(big, 2 * 1024 ** 3);
    const root = resolve(import.meta.dirname, '../..');
    const seed = spawnTree(process.execPath, ['--import', 'tsx', join(root, 'agent/cli/index.ts'), '--config', configFile, 'seed', big, '--name', 'lin', '--version', '1'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const child = seed.child;
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const partial = join(config.stateDir, 'blobs', 'partial');
    const copying = () => (existsSync(partial) ? readdirSync(partial) : []).some((f) => statSync(join(partial, f)).size > 0);
    await waitFor(copying, 60_000, 'the copy to start');
    child.kill('SIGINT');
    expect((await seed.exited).code).toBe(130);
    expect(stderr).toBe('modeld: Cancelled: import of ' + big + ' cancelled\n');
    expect(readdirSync(partial)).toEqual([]);
    expect(existsSync(join(config.stateDir, 'blobs', 'sha256'))).toBe(false);
    expect(existsSync(join(config.stateDir, 'modeld.lock'))).toBe(false);
  });

  it('many CLI commands at once while the daemon runs all go through it; the store stays consistent', async () => {
    const a = await makeModelArchive(join(work, 'a.tar.gz'), { w: 1, b: 0 });
    const b = await makeModelArchive(join(work, 'b.tar.gz'), { w: 2, b: 0 });
    daemon = startAgentProcess(config, ['--no-serve']);
    await waitFor(async () => (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).daemon, 60_000, 'the daemon to answer');
    const spec = writeYaml(join(work, 'ab.yaml'), inferenceModel('lin', [{ version: '1', sha256: a.sha256 }, { version: '2', sha256: b.sha256 }], { targetVersion: '1' }));
    const results = await Promise.all([
      cli('seed', a.path, '--name', 'lin', '--version', '1'),
      cli('seed', b.path, '--name', 'lin', '--version', '2'),
      cli('seed', a.path, '--name', 'lin', '--version', '1'),
      cli('gc', '--dry-run'),
      cli('verify', '--no-repair'),
      cli('events'),
      cli('status'),
    ]);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect((await cli('apply', '-f', spec)).code).toBe(0);
    await waitFor(async () => (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0]?.phase === 'Installed', 120_000, 'installed');
    expect((await cli('verify')).code).toBe(0);
    await daemon.kill('SIGTERM');
    daemon = undefined;
    const db = new Database(join(config.stateDir, 'state.db'), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect((db.prepare('SELECT sha256 FROM blobs ORDER BY sha256').all() as Array<{ sha256: string }>).map((r) => r.sha256)).toEqual([a.sha256, b.sha256].sort());
    } finally {
      db.close();
    }
    // Without the daemon, the same check directly on the state directory.
    expect((await cli('verify')).code).toBe(0);
  }, 240_000);

  it('a download that failed is remedied by seeding the archive', async () => {
    const a = await makeModelArchive(join(work, 'a.tar.gz'), { w: 1, b: 0 });
    daemon = startAgentProcess(config, ['--no-serve']);
    // The URL answers nothing: the download fails.
    const spec = writeYaml(join(work, 'a.yaml'), inferenceModel('lin', [{ version: '1', sha256: a.sha256, url: `http://127.0.0.1:${await freePort()}/a.tar.gz` }]));
    expect((await cli('apply', '-f', spec)).code).toBe(0);
    await waitFor(async () => (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0]?.phase === 'Failed', 120_000, 'the download to fail');
    const failed = (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0];
    expect(failed.lastError).toMatchObject({ version: '1' });
    const seeded = await cli('seed', a.path, '--name', 'lin', '--version', '1');
    expect(seeded.code, seeded.stderr).toBe(0);
    // The failure is forgotten at once (not at the runner's own retry, 60 s later), and it installs from the store.
    expect((JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0].lastError).toBeUndefined();
    await waitFor(async () => (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0]?.phase === 'Installed', 120_000, 'installed from the seed');
  }, 240_000);
});
