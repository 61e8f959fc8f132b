import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../agent/admin/status-view.js';
import type { GcResult } from '../../agent/reconcile/gc-run.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { inferenceModel, runCli, writeConfig, writeYaml, offlineNodeConfig } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

// `modeld gc`: --dry-run changes nothing (the whole state directory and every database row are
// compared before and after), and neither gc nor the runner's gc after a switch ever removes
// the current version or the previous (rollback) one.

let work: string;
let config: Record<string, unknown> & { stateDir: string };
let configFile: string;
let daemon: AgentProcess | undefined;
const archives: Record<string, { path: string; sha256: string }> = {};

const state = () => config.stateDir;
const versionsDir = () => join(state(), 'models/default/lin/versions');
/** Installed trees, as versions: each directory must be named <version>@<the archive's digest>. */
const installed = () =>
  readdirSync(versionsDir())
    .map((n) => {
      const [v, sha] = n.split('@');
      expect(sha, n).toBe(archives[v]?.sha256);
      return v;
    })
    .sort();
const tree = (v: string) => `${v}@${archives[v].sha256}`;
const current = () => readlinkSync(join(state(), 'models/default/lin/current'));
const blobFiles = () => {
  const root = join(state(), 'blobs/sha256');
  return readdirSync(root).flatMap((ab) => readdirSync(join(root, ab)).map((rest) => ab + rest)).sort();
};

/** Every path under the state directory with its type, mode, size and (for files) content hash. */
function listing(opts: { withDb: boolean }): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    const rel = relative(state(), p) || '.';
    if (!opts.withDb && (/^state\.db/.test(rel) || rel.startsWith('run'))) return;
    if (st.isDirectory()) {
      out.push(`d ${rel} ${st.mode.toString(8)}`);
      for (const n of readdirSync(p).sort()) walk(join(p, n));
    } else if (st.isSymbolicLink()) out.push(`l ${rel} ${readlinkSync(p)}`);
    else if (/^state\.db/.test(rel)) out.push(`f ${rel}`); // pages move on checkpoints: rows are compared instead
    else out.push(`f ${rel} ${st.mode.toString(8)} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
  };
  walk(state());
  return out;
}

/** Every row of every table, read-only. */
function rows(tables?: string[]): Record<string, unknown[]> {
  const db = new Database(join(state(), 'state.db'), { readonly: true });
  try {
    const names = tables ?? (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((t) => t.name);
    return Object.fromEntries(names.map((n) => [n, db.prepare(`SELECT * FROM "${n}" ORDER BY 1, 2`).all()]));
  } finally {
    db.close();
  }
}

const cli = (...args: string[]) => runCli(configFile, args);

async function apply(versions: string[], target: string) {
  const file = writeYaml(join(work, `spec-${target}.yaml`), inferenceModel('lin', versions.map((v) => ({ version: v, sha256: archives[v].sha256 })), { targetVersion: target }));
  const r = await cli('apply', '-f', file);
  expect(r.code, r.stderr).toBe(0);
}

async function waitInstalled(version: string) {
  await waitFor(
    async () => {
      const r = await cli('status', '--json');
      const m = (JSON.parse(r.stdout) as StatusReport).models[0];
      return m?.phase === 'Installed' && m.servingVersion === version;
    },
    120_000,
    `version ${version} installed and current`,
  );
}

async function gc(...args: string[]): Promise<GcResult> {
  const r = await cli('gc', '--json', ...args);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as GcResult;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-cli-gc-'));
  config = await offlineNodeConfig(work);
  configFile = writeConfig(config);
  for (const [v, w] of [['1', 1], ['2', 2], ['3', 3], ['4', 4]] as const) {
    archives[v] = await makeModelArchive(join(work, `lin-${v}.tar.gz`), { w, b: 0 });
  }
  for (const v of ['1', '2', '3']) {
    const r = await cli('seed', archives[v].path, '--name', 'lin', '--version', v);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await daemon?.end();
  rmSync(work, { recursive: true, force: true });
});

describe('modeld gc', () => {
  it('--dry-run changes nothing, through the daemon and directly; gc removes only what is unprotected', async () => {
    daemon = startAgentProcess(config, ['--no-serve']);
    for (const v of ['1', '2', '3']) {
      await apply(['1', '2', '3'], v);
      await waitInstalled(v);
    }
    expect(installed()).toEqual(['1', '2', '3']);

    const expectedPlan = {
      removeVersions: [{ namespace: 'default', name: 'lin', version: '1', sha256: archives['1'].sha256 }],
      removeBlobs: [{ sha256: archives['1'].sha256 }],
    };
    // Through the running daemon.
    let before = [listing({ withDb: false }), rows(['versions', 'blobs', 'specs'])];
    expect(await gc('--all', '--dry-run')).toMatchObject({ dryRun: true, ...expectedPlan });
    expect([listing({ withDb: false }), rows(['versions', 'blobs', 'specs'])]).toEqual(before);

    await daemon.kill('SIGTERM');
    daemon = undefined;
    // Directly on the state directory: every file and every row of every table.
    before = [listing({ withDb: true }), rows()];
    const dry = await gc('--all', '--dry-run');
    expect(dry).toMatchObject(expectedPlan);
    expect(dry.freedBytes).toBeGreaterThan(0);
    expect([listing({ withDb: true }), rows()]).toEqual(before);

    // For real: v1 and its archive go; current (3) and previous (2) stay, with their archives.
    const done = await gc('--all');
    expect(done).toMatchObject({ dryRun: false, ...expectedPlan });
    expect(installed()).toEqual(['2', '3']);
    expect(current()).toBe(`versions/${tree('3')}`);
    expect(blobFiles()).toEqual([archives['2'].sha256, archives['3'].sha256].sort());
    expect((rows(['versions']).versions as Array<{ version: string }>).map((v) => v.version).sort()).toEqual(['2', '3']);
    // Nothing more to take.
    expect(await gc('--all')).toMatchObject({ removeVersions: [], removeBlobs: [] });
  }, 300_000);

  it('after a switch the runner gets the store under store.capBytes, keeping current and previous', async () => {
    await daemon?.kill('SIGTERM');
    daemon = undefined;
    const seeded = await cli('seed', archives['4'].path, '--name', 'lin', '--version', '4');
    expect(seeded.code, seeded.stderr).toBe(0);
    await apply(['2', '3', '4'], '4');
    // A cap nothing can meet: everything unprotected goes, protected versions stay.
    const tight = { ...config, store: { capBytes: 1 } };
    writeConfig(tight, configFile);
    daemon = startAgentProcess(tight, ['--no-serve']);
    await waitInstalled('4');
    await waitFor(() => installed().join() === '3,4', 60_000, 'version 2 to be collected');
    expect(current()).toBe(`versions/${tree('4')}`);
    const m = (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0];
    expect(m).toMatchObject({ servingVersion: '4', previousVersion: '3' });
    // The rollback version is still there to roll back to.
    const rb = await cli('rollback', 'lin');
    expect(rb.code, rb.stderr).toBe(0);
    await waitInstalled('3');
    expect(existsSync(join(versionsDir(), tree('4')))).toBe(true);
  }, 300_000);
});
