import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InferenceModelSpecSchema } from '../../shared/index.js';
import { migrateLegacyTrees } from '../../agent/install/migrate-layout.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { recoverState } from '../../agent/reconcile/recover.js';
import { SCHEMA_VERSION } from '../../agent/store/db.js';
import { openStore } from '../../agent/store/index.js';
import type { StatusReport } from '../../agent/admin/status-view.js';
import type { VerifyReport } from '../../agent/admin/verify.js';
import { writeLegacyState, type LegacyVersion } from '../helpers/legacy-state.js';
import { offlineNodeConfig, runCli, writeConfig } from '../helpers/modeld-cli.js';

// The move from versions/<v>/ to versions/<v>@<sha256>/ at start: the database migration, the
// disk migration, and kill -9 before every single change the disk migration makes — `current`
// must name a complete tree with the serving bytes at each of those instants, and the next start
// must finish the job.

const ROOT = resolve(import.meta.dirname, '../..');
const CHILD = join(ROOT, 'test/fixtures/migrate-layout-child.ts');

let work: string;
const stateDir = () => join(work, 'state');
const modelDir = () => join(stateDir(), 'models', 'default', 'lin');
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

const build = (version: string): LegacyVersion => ({
  version,
  sha256: sha(`archive ${version}`),
  files: { 'model.onnx': `weights of ${version}\n`.repeat(100), 'extra/labels.txt': `labels ${version}\n` },
  links: { 'latest.onnx': 'model.onnx' },
});
const v1 = build('1');
const v2 = build('2');
const spec = InferenceModelSpecSchema.parse({
  modelName: 'lin',
  deployToLayer: 'edge',
  manifest: [v1, v2].map((v) => ({ version: v.version, downloadURL: `http://127.0.0.1:9/${v.version}.tgz`, sha256sum: v.sha256 })),
  targetVersion: '2',
});
const legacy = (versions = [v1, v2]) => writeLegacyState(stateDir(), [{ namespace: 'default', name: 'lin', spec, versions, current: '2', previous: '1' }]);

/** `current` names a complete tree holding exactly version 2's files. */
function expectServesV2(when: string) {
  const cur = join(modelDir(), 'current');
  expect(existsSync(join(cur, '.modeld-complete')), `${when}: complete`).toBe(true);
  for (const [rel, data] of Object.entries(v2.files)) expect(readFileSync(join(cur, rel), 'utf8'), `${when}: ${rel}`).toBe(data);
  expect(readFileSync(join(cur, 'latest.onnx'), 'utf8'), `${when}: link inside the tree`).toBe(v2.files['model.onnx']);
}

/** The end state: both trees under their digest names, `current` at 2's, nothing else left. */
function expectMigrated() {
  expect(readlinkSync(join(modelDir(), 'current'))).toBe(`versions/2@${v2.sha256}`);
  expect(readdirSync(join(modelDir(), 'versions')).sort()).toEqual([`1@${v1.sha256}`, `2@${v2.sha256}`]);
  for (const v of [v1, v2]) {
    const dir = join(modelDir(), 'versions', `${v.version}@${v.sha256}`);
    for (const [rel, data] of Object.entries(v.files)) expect(readFileSync(join(dir, rel), 'utf8')).toBe(data);
    expect(readlinkSync(join(dir, 'latest.onnx'))).toBe('model.onnx');
    expect(statSync(dir).mode & 0o777).toBe(0o555);
    expect(statSync(join(dir, 'extra')).mode & 0o777).toBe(0o555);
    expect(statSync(join(dir, 'model.onnx')).mode & 0o777).toBe(0o444);
  }
  expectServesV2('migrated');
}

/** What the agent does at start: the database migration (openStore), then recoverState. */
async function start() {
  const store = openStore(join(stateDir(), 'state.db'));
  try {
    await recoverState(statePaths(stateDir()), store, silentLogger());
    return { versions: store.versions.listFor('default', 'lin'), model: store.models.get('default', 'lin')! };
  } finally {
    store.close();
  }
}

/** Runs the migration in a child that stops before change `stopAt`; resolves once it stopped (or finished). */
function runChildUntil(stopAt: number): Promise<{ stopped?: { stoppedAt: number; what: string }; done?: { changes: number }; kill(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, stateDir(), String(stopAt)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c));
  return new Promise((resolveRun, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      const line = out.split('\n').find((l) => l.trim());
      if (!line || !out.includes('\n')) return;
      const msg = JSON.parse(line) as { stoppedAt?: number; what?: string; done?: boolean; changes?: number };
      resolveRun(msg.done ? { done: { changes: msg.changes! }, kill } : { stopped: { stoppedAt: msg.stoppedAt!, what: msg.what! }, kill });
    });
    child.once('exit', (code) => {
      if (!out.includes('\n')) reject(new Error(`migration child exited ${code} before saying anything: ${err.slice(-2000)}`));
    });
  });
}

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'modeld-migrate-'));
});
afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('moving to digest-keyed trees', () => {
  it('the database migration keys installed versions by digest and names the trees the models row points at', async () => {
    await legacy();
    const store = openStore(join(stateDir(), 'state.db'));
    try {
      // Migrated from 1 up to the newest (2 keyed the trees by digest; later ones come on top).
      expect(store.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(store.versions.listFor('default', 'lin').map((v) => [v.version, v.sha256])).toEqual([['1', v1.sha256], ['2', v2.sha256]]);
      expect(store.models.get('default', 'lin')).toMatchObject({ servingVersion: '2', servingSha256: v2.sha256, previousVersion: '1', previousSha256: v1.sha256, gcDue: false });
      // Two builds of one version are two rows now.
      store.versions.put({ namespace: 'default', name: 'lin', version: '2', sha256: sha('retrained') });
      expect(store.versions.listFor('default', 'lin').filter((v) => v.version === '2')).toHaveLength(2);
    } finally {
      store.close();
    }
  });

  it('moves old trees under their digest by hard links (no byte copied), repoints current, and a second start changes nothing', async () => {
    await legacy();
    const inode = statSync(join(modelDir(), 'versions', '2', 'model.onnx')).ino;
    const { versions, model } = await start();
    expectMigrated();
    expect(statSync(join(modelDir(), 'versions', `2@${v2.sha256}`, 'model.onnx')).ino).toBe(inode);
    expect(versions.map((v) => [v.version, v.sha256])).toEqual([['1', v1.sha256], ['2', v2.sha256]]);
    expect(model).toMatchObject({ servingVersion: '2', servingSha256: v2.sha256, previousSha256: v1.sha256 });

    const again = await migrateLegacyTrees(statePaths(stateDir()), { recordedDigest: () => undefined, log: silentLogger() });
    expect(again).toEqual({ migrated: [], untracked: [] });
    await start();
    expectMigrated();
  });

  it('takes the digest from the versions table when the marker has none; a tree with neither keeps its name and keeps serving', async () => {
    await legacy([{ ...v1, markerDigest: false }, { ...v2, sha256: '', markerDigest: false }]);
    const { versions } = await start();
    expect(readdirSync(join(modelDir(), 'versions')).sort()).toEqual([`1@${v1.sha256}`, '2']);
    expect(readlinkSync(join(modelDir(), 'current'))).toBe('versions/2');
    expectServesV2('untracked');
    expect(versions.map((v) => [v.version, v.sha256])).toEqual([['1', v1.sha256], ['2', undefined]]);
  });

  it('kill -9 before any one of its changes on disk, and again in the resumed run, leaves current serving a complete tree; the next start finishes', { timeout: 300_000 }, async () => {
    // How many changes a whole migration makes.
    await legacy();
    let changes = 0;
    await migrateLegacyTrees(statePaths(stateDir()), { recordedDigest: () => undefined, log: silentLogger(), beforeChange: () => void changes++ });
    expectMigrated();
    expect(changes).toBeGreaterThan(10);

    const seen: string[] = [];
    for (let k = 0; k < changes; k++) {
      rmSync(stateDir(), { recursive: true, force: true });
      await legacy();
      const run = await runChildUntil(k);
      expect(run.stopped?.stoppedAt, `stops before change ${k}`).toBe(k);
      seen.push(run.stopped!.what);
      expectServesV2(`before change ${k} (${run.stopped!.what})`);
      await run.kill();
      expectServesV2(`killed before change ${k} (${run.stopped!.what})`);
      // The next start is killed too, before its own change k (or it finishes first).
      const resumed = await runChildUntil(k);
      await resumed.kill();
      expectServesV2(`resumed run killed before change ${k}${resumed.stopped ? ` (${resumed.stopped.what})` : ' (it finished)'}`);
      await start();
      expectMigrated();
      expect(readdirSync(join(modelDir(), 'versions')).filter((n) => n.startsWith('.'))).toEqual([]);
    }
    // Every kind of change was a kill point: building, renaming into place, repointing current, removing the old tree.
    expect(seen.some((w) => w.startsWith('link'))).toBe(true);
    expect(seen.some((w) => w.startsWith('rename'))).toBe(true);
    expect(seen.some((w) => w.startsWith('point current'))).toBe(true);
    expect(seen.some((w) => w.startsWith('remove old'))).toBe(true);
  });

  it('the CLI reads an old state directory as it is, and migrates it before writing to it without a daemon', { timeout: 120_000 }, async () => {
    await legacy();
    const configFile = writeConfig({ ...(await offlineNodeConfig(work)), stateDir: stateDir() });
    // Read-only: the database is not even migrated yet.
    const st = await runCli(configFile, ['status', '--json']);
    expect(st.code, st.stderr).toBe(0);
    expect((JSON.parse(st.stdout) as StatusReport).models[0]).toMatchObject({ servingVersion: '2', previousVersion: '1' });
    expect(readlinkSync(join(modelDir(), 'current'))).toBe('versions/2');

    const verify = await runCli(configFile, ['verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout) as VerifyReport).toMatchObject({ versionsChecked: 2, ok: true });
    expectMigrated();
    const rb = await runCli(configFile, ['rollback', 'lin', '--json']);
    expect(rb.code, rb.stderr).toBe(0);
    expect(JSON.parse(rb.stdout)).toMatchObject({ heldVersion: '1', heldSha256: v1.sha256 });
  });
});
