import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../agent/admin/status-view.js';
import type { VerifyReport } from '../../agent/admin/verify.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { inferenceModel, runCli, writeConfig, writeYaml, offlineNodeConfig } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

// `modeld verify` finds a byte flipped on disk in a stored archive and in an installed file,
// exits non-zero, quarantines the archive, and has the runner reinstall the damaged version
// from its (intact) archive.

let work: string;
let config: Record<string, unknown> & { stateDir: string };
let configFile: string;
let daemon: AgentProcess | undefined;
const archives: Record<string, { path: string; sha256: string }> = {};

const cli = (...args: string[]) => runCli(configFile, args);
const blobPath = (sha: string) => join(config.stateDir, 'blobs/sha256', sha.slice(0, 2), sha.slice(2));
const treeDir = (v: string) => join(config.stateDir, 'models/default/lin/versions', `${v}@${archives[v].sha256}`);
const modelFile = (v: string) => join(treeDir(v), 'model.onnx');

function flipByte(file: string, at: number) {
  const mode = statSync(file).mode & 0o777;
  chmodSync(file, 0o644);
  const bytes = readFileSync(file);
  bytes[at] ^= 0xff;
  writeFileSync(file, bytes);
  chmodSync(file, mode);
}

async function apply(target: string) {
  const file = writeYaml(join(work, `spec-${target}.yaml`), inferenceModel('lin', ['1', '2'].map((v) => ({ version: v, sha256: archives[v].sha256 })), { targetVersion: target }));
  const r = await cli('apply', '-f', file);
  expect(r.code, r.stderr).toBe(0);
}

async function waitInstalled(version: string) {
  await waitFor(
    async () => {
      const m = (JSON.parse((await cli('status', '--json')).stdout) as StatusReport).models[0];
      return m?.phase === 'Installed' && m.servingVersion === version && m.versions.some((v) => v.version === version);
    },
    120_000,
    `version ${version} installed and current`,
  );
}

async function verify(...args: string[]): Promise<{ code: number | null; report: VerifyReport; stderr: string }> {
  const r = await cli('verify', '--json', ...args);
  return { code: r.code, report: JSON.parse(r.stdout) as VerifyReport, stderr: r.stderr };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-cli-verify-'));
  config = await offlineNodeConfig(work);
  configFile = writeConfig(config);
  archives['1'] = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 1, b: 1 });
  archives['2'] = await makeModelArchive(join(work, 'lin-2.tar.gz'), { w: 2, b: 2 });
  for (const v of ['1', '2']) expect((await cli('seed', archives[v].path, '--name', 'lin', '--version', v)).code).toBe(0);
  await apply('1');
  daemon = startAgentProcess(config, ['--no-serve']);
  await waitInstalled('1');
  await apply('2');
  await waitInstalled('2');
}, 300_000);

afterAll(async () => {
  await daemon?.end();
  rmSync(work, { recursive: true, force: true });
});

describe('modeld verify', () => {
  it('reports an intact store', async () => {
    const r = await cli('verify');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('checked 2 archives and 2 versions: all intact\n');
  });

  it('finds a flipped byte in an archive and in an installed file; --no-repair moves nothing', async () => {
    const original = readFileSync(modelFile('2'));
    flipByte(blobPath(archives['1'].sha256), 100);
    flipByte(modelFile('2'), 20);

    const dry = await verify('--no-repair');
    expect(dry.code).toBe(1);
    expect(dry.stderr).toBe('modeld: Corrupt: 2 corrupt item(s) found\n');
    expect(dry.report.corrupt).toEqual([
      expect.objectContaining({ kind: 'blob', sha256: archives['1'].sha256, action: 'reported' }),
      expect.objectContaining({ kind: 'version', namespace: 'default', name: 'lin', version: '2', action: 'reported' }),
    ]);
    expect(existsSync(blobPath(archives['1'].sha256))).toBe(true);

    // Repair: the archive is quarantined; the damaged (current) version is reinstalled from its archive.
    const fixed = await verify();
    expect(fixed.code).toBe(1);
    expect(fixed.report.corrupt).toEqual([
      expect.objectContaining({ kind: 'blob', sha256: archives['1'].sha256, action: 'quarantined' }),
      expect.objectContaining({ kind: 'version', version: '2', action: 'removed-for-reinstall' }),
    ]);
    expect(existsSync(blobPath(archives['1'].sha256))).toBe(false);
    expect(readdirSync(join(config.stateDir, 'blobs/quarantine'))).toEqual([expect.stringMatching(new RegExp(`^${archives['1'].sha256}-`))]);
    await waitFor(() => existsSync(modelFile('2')) && readFileSync(modelFile('2')).equals(original), 60_000, 'version 2 reinstalled intact');
    await waitInstalled('2');

    const after = await cli('verify');
    expect(after.code, after.stdout + after.stderr).toBe(0);
    expect(after.stdout).toBe('checked 1 archive and 2 versions: all intact\n');
  });

  it('works on the state directory when the daemon is stopped', async () => {
    await daemon!.kill('SIGTERM');
    daemon = undefined;
    flipByte(modelFile('1'), 30);
    const r = await verify();
    expect(r.code).toBe(1);
    // Its archive is gone (quarantined above) and it is not current: removed; a spec wanting it downloads it again.
    expect(r.report.corrupt).toEqual([expect.objectContaining({ kind: 'version', version: '1', action: 'removed-for-reinstall' })]);
    expect(existsSync(treeDir('1'))).toBe(false);
    expect((await cli('verify')).code).toBe(0);

    // The current version damaged and its archive too: the archive is quarantined, the version
    // only reported (serving damaged files beats serving nothing; the operator decides).
    flipByte(blobPath(archives['2'].sha256), 50);
    flipByte(modelFile('2'), 25);
    const both = await verify();
    expect(both.code).toBe(1);
    expect(both.report.corrupt).toEqual([
      expect.objectContaining({ kind: 'blob', sha256: archives['2'].sha256, action: 'quarantined' }),
      expect.objectContaining({ kind: 'version', version: '2', action: 'reported' }),
    ]);
    expect(existsSync(modelFile('2'))).toBe(true);
    expect((await verify()).report.corrupt).toEqual([expect.objectContaining({ kind: 'version', version: '2', action: 'reported' })]);
  });
});
