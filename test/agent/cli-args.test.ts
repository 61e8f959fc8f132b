import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectOneLineError, inferenceModel, runCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';

const ROOT = resolve(import.meta.dirname, '../..');

// Bad arguments, as a user types them: each gives one line on stderr with the reason, the
// documented exit code, no stack trace, and changes nothing.

let work: string;
let configFile: string;
let stateDir: string;
let archive: { path: string; sha256: string };

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-cli-args-'));
  stateDir = join(work, 'state');
  configFile = writeConfig({ stateDir, node: { name: 'edge-1' }, admin: { socket: join(work, 'admin.sock') } });
  archive = await makeModelArchive(join(work, 'lin.tar.gz'), { w: 1, b: 0 });
  writeFileSync(join(work, 'not-an-archive.tar.gz'), 'hello, I am text\n');
  mkdirSync(join(work, 'a-directory'));
  writeFileSync(join(work, 'malformed.yaml'), 'apiVersion: ai.kubeedge.io/v1alpha1\nkind: [InferenceModel\n');
  writeFileSync(join(work, 'empty.yaml'), '---\n');
  writeYaml(join(work, 'pod.yaml'), { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } });
  writeYaml(join(work, 'bad-target.yaml'), inferenceModel('lin', [{ version: '1', sha256: archive.sha256 }], { targetVersion: '2' }));
  writeYaml(join(work, 'bad-name.yaml'), { ...inferenceModel('lin', [{ version: '1', sha256: archive.sha256 }]), metadata: { name: 'Not_Valid' } });
  writeFileSync(join(work, 'bad-config.yaml'), 'stateDir: 42\nbroker: { url: "ftp://x" }\n');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('bad arguments', () => {
  const cases: Array<{ what: string; args: () => string[]; code: number; line: RegExp; config?: () => string | undefined }> = [
    { what: 'seed: missing archive', args: () => ['seed', join(work, 'missing.tar.gz'), '--name', 'lin', '--version', '1'], code: 2, line: /^modeld: BadRequest: cannot read .*missing\.tar\.gz: no such file$/ },
    { what: 'seed: a directory', args: () => ['seed', join(work, 'a-directory'), '--name', 'lin', '--version', '1'], code: 2, line: /is not a regular file$/ },
    { what: 'seed: not an archive', args: () => ['seed', join(work, 'not-an-archive.tar.gz'), '--name', 'lin', '--version', '1'], code: 2, line: /not a tar or tar\.gz archive \(first bytes: 68656c6c/ },
    { what: 'seed: malformed digest', args: () => ['seed', archive.path, '--name', 'lin', '--version', '1', '--sha256', 'xyz'], code: 2, line: /--sha256 "xyz" is not a sha256 digest/ },
    { what: 'seed: digest mismatch', args: () => ['seed', archive.path, '--name', 'lin', '--version', '1', '--sha256', 'ab'.repeat(32)], code: 1, line: /^modeld: DigestMismatch: sha256 mismatch for .*: expected abab.*, got [0-9a-f]{64}$/ },
    { what: 'seed: no --name', args: () => ['seed', archive.path, '--version', '1'], code: 2, line: /^modeld: required option '--name <model>' not specified$/ },
    { what: 'seed: bad model name', args: () => ['seed', archive.path, '--name', 'Bad_Name', '--version', '1'], code: 2, line: /"Bad_Name" is not a model reference/ },
    { what: 'seed: bad version', args: () => ['seed', archive.path, '--name', 'lin', '--version', '../../etc'], code: 2, line: /--version "..\/..\/etc" is not a version/ },
    { what: 'apply: missing file', args: () => ['apply', '-f', join(work, 'missing.yaml')], code: 2, line: /cannot read .*missing\.yaml: no such file$/ },
    { what: 'apply: malformed YAML', args: () => ['apply', '-f', join(work, 'malformed.yaml')], code: 2, line: /malformed\.yaml: not valid YAML: / },
    { what: 'apply: empty file', args: () => ['apply', '-f', join(work, 'empty.yaml')], code: 2, line: /no InferenceModel resource in the file$/ },
    { what: 'apply: not an InferenceModel', args: () => ['apply', '-f', join(work, 'pod.yaml')], code: 2, line: /apiVersion must be ai\.kubeedge\.io\/v1alpha1/ },
    { what: 'apply: targetVersion not in manifest', args: () => ['apply', '-f', join(work, 'bad-target.yaml')], code: 2, line: /TargetVersionNotInManifest: targetVersion "2" is not in manifest/ },
    { what: 'apply: bad metadata.name', args: () => ['apply', '-f', join(work, 'bad-name.yaml')], code: 2, line: /metadata\.name: must be a DNS-1123 label/ },
    { what: 'apply: no -f', args: () => ['apply'], code: 2, line: /required option '-f, --filename <path>' not specified/ },
    { what: 'status: unknown model', args: () => ['status', 'nope'], code: 4, line: /^modeld: NotFound: no model default\/nope on this node/ },
    { what: 'rollback: unknown model', args: () => ['rollback', 'nope'], code: 4, line: /^modeld: NotFound: no model default\/nope on this node$/ },
    { what: 'rollback: bad --to', args: () => ['rollback', 'lin', '--to', 'a b'], code: 2, line: /--to "a b" is not a version/ },
    { what: 'delete: unknown model', args: () => ['delete', 'x/nope'], code: 4, line: /^modeld: NotFound: no spec for x\/nope on this node$/ },
    { what: 'events: bad --limit', args: () => ['events', '--limit', '0'], code: 2, line: /--limit must be an integer from 1 to 1000$/ },
    { what: 'unknown command', args: () => ['frobnicate'], code: 2, line: /^modeld: unknown command 'frobnicate'$/ },
    { what: 'unknown option', args: () => ['status', '--bogus'], code: 2, line: /^modeld: unknown option '--bogus'$/ },
    { what: 'invalid config', args: () => ['status'], code: 78, line: /^modeld: ConfigInvalid: .*bad-config\.yaml: /, config: () => join(work, 'bad-config.yaml') },
    { what: 'missing config file', args: () => ['gc', '--dry-run'], code: 78, line: /^modeld: ConfigInvalid: cannot read config file/, config: () => join(work, 'nope.yaml') },
  ];

  for (const c of cases) {
    it(`${c.what}: exit ${c.code} with a one-line reason`, async () => {
      const r = await runCli(c.config ? c.config() : configFile, c.args());
      expect(r.code, r.stderr).toBe(c.code);
      expect(expectOneLineError(r)).toMatch(c.line);
      expect(r.stdout).toBe('');
    });
  }

  it('none of them changed the state directory', async () => {
    const r = await runCli(configFile, ['status', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ models: [] });
    expect(existsSync(join(stateDir, 'blobs', 'sha256')) ? readdirSync(join(stateDir, 'blobs', 'sha256')) : []).toEqual([]);
    expect(existsSync(join(stateDir, 'blobs', 'partial')) ? readdirSync(join(stateDir, 'blobs', 'partial')) : []).toEqual([]);
    expect(existsSync(join(stateDir, 'modeld.lock'))).toBe(false);
    // No status queued for the cloud, no event recorded.
    const db = new Database(join(stateDir, 'state.db'), { readonly: true });
    try {
      for (const table of ['specs', 'models', 'versions', 'blobs', 'outbox', 'events']) {
        expect({ table, rows: db.prepare(`SELECT * FROM ${table}`).all() }).toEqual({ table, rows: [] });
      }
    } finally {
      db.close();
    }
  });
});

describe('seed progress', () => {
  const hasScript = spawnSync('script', ['--version']).status === 0;
  it.skipIf(!hasScript)('draws a progress bar on stderr in a terminal, and nothing in a pipe', async () => {
    const big = join(work, 'progress.tar.gz');
    writeFileSync(big, Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(8 * 1024 * 1024)]));
    const cfg = writeConfig({ stateDir: join(work, 'progress-state'), admin: { socket: join(work, 'progress.sock') } }, join(work, 'progress.yaml'));
    // util-linux script(1) gives the command a pseudo-terminal.
    const cmd = [process.execPath, '--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), '--config', cfg, 'seed', big, '--name', 'lin', '--version', '1'].map((a) => `'${a}'`).join(' ');
    const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/seeding .*progress\.tar\.gz \[#+\] 100% 8\.0 MiB\/8\.0 MiB/);
    const piped = await runCli(cfg, ['seed', big, '--name', 'lin', '--version', '1']);
    expect(piped.code).toBe(0);
    expect(piped.stderr).not.toMatch(/\[#/);
  });
});

describe('--help and version', () => {
  it('every subcommand has --help (exit 0)', async () => {
    for (const cmd of ['run', 'status', 'apply', 'delete', 'seed', 'rollback', 'gc', 'verify', 'events', 'version']) {
      const r = await runCli(configFile, [cmd, '--help']);
      expect({ cmd, code: r.code }).toEqual({ cmd, code: 0 });
      expect(r.stdout).toMatch(new RegExp(`^Usage: modeld ${cmd}`));
    }
  });

  it('version, -V and --version print the version; version --json parses', async () => {
    const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };
    expect((await runCli(configFile, ['-V'])).stdout).toBe(`${pkg.version}\n`);
    expect((await runCli(configFile, ['--version'])).stdout).toBe(`${pkg.version}\n`);
    const v = await runCli(configFile, ['version', '--json']);
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ version: pkg.version });
  });
});
