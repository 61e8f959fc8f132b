import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { snapshotDir } from '../helpers/dir-snapshot.js';
import { CLI_ARGV, expectOneLineError, inferenceModel, offlineNodeConfig, runCli, startCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

// kubectl's and systemctl's habits on the node, through the CLI as a user runs it: apply -f of a
// directory and of stdin, delete -f, apply --dry-run and diff (which change nothing: the whole
// state directory is compared before and after, with and without a daemon), get/describe with
// -o json|yaml|wide|name, events --follow, config view with each value's source, completion.

let work: string;
let config: Record<string, unknown> & { stateDir: string };
let configFile: string;
let daemon: AgentProcess | undefined;
const archives: Record<string, { path: string; sha256: string }> = {};
const cli = (...args: string[]) => runCli(configFile, args);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-kubectl-'));
  config = await offlineNodeConfig(work);
  configFile = writeConfig(config);
  archives['1'] = await makeModelArchive(join(work, 'a-1.tar.gz'), { w: 2, b: 1 });
  archives['2'] = await makeModelArchive(join(work, 'a-2.tar.gz'), { w: 3, b: 0 });
});
afterAll(async () => {
  await daemon?.end();
  rmSync(work, { recursive: true, force: true });
});

const model = (name: string, target: string) =>
  inferenceModel(name, [{ version: '1', sha256: archives['1'].sha256 }, { version: '2', sha256: archives['2'].sha256 }], { targetVersion: target });

describe('apply -f of a directory and of stdin, delete -f', () => {
  it('applies every .yaml/.yml/.json file of a directory, in name order, and ignores the rest', async () => {
    const dir = join(work, 'specs');
    writeYaml(join(dir, 'b.yaml'), model('beta', '1'));
    writeFileSync(join(dir, 'a.json'), JSON.stringify(model('alpha', '1')));
    writeFileSync(join(dir, 'README.md'), '# not a resource\n');
    mkdirSync(join(dir, 'nested'));
    writeYaml(join(dir, 'nested', 'c.yml'), model('gamma', '1'));
    const r = await cli('apply', '-f', dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('default/alpha created (generation 1)\ndefault/beta created (generation 1)\n');
    const deep = await cli('apply', '-R', '-f', dir);
    expect(deep.stdout).toBe('default/alpha unchanged (generation 1)\ndefault/beta unchanged (generation 1)\ndefault/gamma created (generation 1)\n');
    const names = await cli('get', '-o', 'name');
    expect(names.stdout).toBe('default/alpha\ndefault/beta\ndefault/gamma\n');
  });

  it('reads -f - from stdin, and a bad file anywhere applies nothing', async () => {
    const r = await runCli(configFile, ['apply', '-f', '-'], { input: stringify(model('delta', '2')) });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('default/delta created (generation 1)\n');
    const bad = writeYaml(join(work, 'bad', 'z.yaml'), { ...model('epsilon', '1'), spec: { ...model('epsilon', '1').spec, replica: 1 } });
    writeYaml(join(work, 'bad', 'a.yaml'), model('zeta', '1'));
    const before = snapshotDir(config.stateDir);
    const refused = await cli('apply', '-f', join(work, 'bad'));
    expect(refused.code).toBe(2);
    expect(expectOneLineError(refused)).toContain(`${bad}: strict decoding error: unknown field "spec.replica"`);
    expect(snapshotDir(config.stateDir)).toEqual(before);
  });

  it('delete -f removes the models the files name', async () => {
    const r = await cli('delete', '-f', join(work, 'specs'), '-R');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('default/alpha deleted\ndefault/beta deleted\ndefault/gamma deleted\n');
    // Without a daemon the models' files stay until `modeld run` removes them; their specs are gone.
    const left = JSON.parse((await cli('get', '-o', 'json')).stdout) as { items: Array<{ metadata: { name: string }; spec?: unknown }> };
    expect(left.items.filter((i) => i.spec).map((i) => i.metadata.name)).toEqual(['delta']);
    const again = await cli('delete', '-f', join(work, 'specs', 'b.yaml'));
    expect(again.code).toBe(4);
    const ignored = await cli('delete', '-f', join(work, 'specs', 'b.yaml'), '--ignore-not-found');
    expect(ignored.code, ignored.stderr).toBe(0);
    expect(ignored.stdout).toBe('default/beta not found\n');
    const both = await cli('delete', 'delta', '-f', join(work, 'specs'));
    expect(both.code).toBe(2);
    expect((await cli('delete', 'delta')).stdout).toBe('default/delta deleted\n');
  });
});

describe('apply --dry-run and diff change nothing', () => {
  const check = async (via: string) => {
    const file = writeYaml(join(work, `lin-${via}.yaml`), model('lin', '2'));
    const before = snapshotDir(config.stateDir);
    const dry = await cli('apply', '-f', file, '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toBe('default/lin configured (generation 2, dry run)\n');
    const diff = await cli('diff', '-f', file);
    expect(diff.code, diff.stderr).toBe(1); // kubectl diff: differences
    expect(diff.stdout).toContain('diff default/lin: generation 1 -> 2\n');
    expect(diff.stdout).toContain('\n-targetVersion: "1"\n+targetVersion: "2"\n');
    expect(diff.stdout).toMatch(/serving: (1|nothing) -> 2\n/);
    const json = await cli('diff', '-f', file, '-o', 'json');
    expect(JSON.parse(json.stdout)).toMatchObject({ daemon: via === 'daemon', plans: [{ model: 'default/lin', action: 'configured', wouldServe: '2' }] });
    const same = await cli('diff', '-f', writeYaml(join(work, `lin-same-${via}.yaml`), model('lin', '1')));
    expect(same.code, same.stdout + same.stderr).toBe(0);
    expect(same.stdout).toContain('diff default/lin: no changes\n');
    const created = await cli('diff', '-f', writeYaml(join(work, `new-${via}.yaml`), model('brandnew', '1')));
    expect(created.stdout).toContain('diff default/brandnew: would be created\n');
    expect(snapshotDir(config.stateDir)).toEqual(before);
  };

  it('without a daemon (the store read-only)', async () => {
    await runCli(configFile, ['seed', archives['1'].path, '--name', 'lin', '--version', '1']);
    expect((await cli('apply', '-f', writeYaml(join(work, 'lin.yaml'), model('lin', '1')))).code).toBe(0);
    await check('store');
  });

  it('through the running daemon', async () => {
    daemon = startAgentProcess(config, ['--no-serve']);
    // The models deleted above are removed at start; then only lin, installed, and nothing to do.
    await waitFor(async () => (await cli('get', '-o', 'name')).stdout === 'default/lin\n', 120_000, 'the deleted models removed');
    await waitFor(async () => JSON.parse((await cli('get', 'lin', '-o', 'json')).stdout || '{}').status?.phase === 'Installed', 120_000, 'lin installed');
    await check('daemon');
  }, 240_000);
});

describe('get, describe, status, events with -o', () => {
  it('get -o yaml is a resource that applies back unchanged (status ignored)', async () => {
    const y = await cli('get', 'lin', '-o', 'yaml');
    expect(y.code, y.stderr).toBe(0);
    const doc = parseYaml(y.stdout);
    expect(doc).toMatchObject({ apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', metadata: { name: 'lin', namespace: 'default' }, status: { phase: 'Installed', servingVersion: '1' } });
    const back = await runCli(configFile, ['apply', '-f', '-'], { input: y.stdout });
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toBe('default/lin unchanged (generation 1)\n');
    const list = JSON.parse((await cli('get', '-o', 'json')).stdout);
    expect(list).toMatchObject({ kind: 'List', items: [{ metadata: { name: 'lin' } }] });
    const wide = await cli('get', '-o', 'wide');
    expect(wide.stdout).toMatch(/^NAMESPACE +NAME +PHASE +SERVING +TARGET +READY +SOURCE +MODEL +URL +REASON\ndefault +lin +Installed +1 +1 +0\/1 +local +lin /);
    const bad = await cli('get', '-o', 'xml');
    expect(bad.code).toBe(2);
    expect(expectOneLineError(bad)).toBe('modeld: BadRequest: -o "xml": the formats are json, yaml, wide, name');
  });

  it("describe tells one model's story: spec, versions with digests, instances, events", async () => {
    const d = await cli('describe', 'lin');
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/^Name: +lin\nNamespace: +default\nSource: +local\n/);
    expect(d.stdout).toContain(`    1        ${archives['1'].sha256}  http://127.0.0.1:9/never/1.tar.gz\n`);
    expect(d.stdout).toMatch(new RegExp(`Versions:\\n  VERSION +STATE +SHA256\\n  1 +serving +${archives['1'].sha256}\\n`));
    expect(d.stdout).toMatch(/Instances:\n  0 of 1 ready, version 1\n/);
    expect(d.stdout).toMatch(/Events:\n  TIME +KIND +MESSAGE\n(.*\n)*.*Installed +Installed\n/);
    const j = JSON.parse((await cli('describe', 'lin', '-o', 'json')).stdout);
    expect(j).toMatchObject({ spec: { modelName: 'lin' }, status: { phase: 'Installed' }, events: expect.arrayContaining([expect.objectContaining({ kind: 'Installed' })]) });
    expect((await cli('describe', 'nope')).code).toBe(4);
  });

  it('status and events take -o json and yaml; events of an unknown model is not found', async () => {
    expect(JSON.parse((await cli('status', '-o', 'json')).stdout)).toMatchObject({ daemon: true, models: [{ name: 'lin' }] });
    expect(parseYaml((await cli('status', '-o', 'yaml')).stdout)).toMatchObject({ daemon: true, models: [{ name: 'lin' }] });
    expect(parseYaml((await cli('events', 'lin', '-o', 'yaml')).stdout)).toMatchObject({ daemon: true, events: expect.any(Array) });
    const nope = await cli('events', 'nope');
    expect(nope.code).toBe(4);
    expect(expectOneLineError(nope)).toBe('modeld: NotFound: no model default/nope on this node');
  });
});

describe('events --follow', () => {
  it('prints the last events, then each new one as it is recorded, until Ctrl-C (exit 0)', async () => {
    const follow = startCli(configFile, ['events', '--follow', '--limit', '3', '--interval', '100']);
    try {
      await waitFor(() => follow.stdout().split('\n').length > 3, 60_000, 'the last 3 events');
      const first = follow.stdout();
      expect(first.trimEnd().split('\n')).toHaveLength(3);
      // Oldest first, as journalctl -f.
      const times = first.trimEnd().split('\n').map((l) => l.slice(0, 24));
      expect([...times].sort()).toEqual(times);
      expect((await cli('apply', '-f', writeYaml(join(work, 'followed.yaml'), model('followed', '1')))).code).toBe(0);
      await waitFor(() => /default\/followed {2}Pending/.test(follow.stdout()), 60_000, 'the new event');
      follow.tree.child.kill('SIGINT');
      expect((await follow.tree.exited).code).toBe(0);
    } finally {
      await follow.tree.end();
    }
  });
});

describe('config view', () => {
  it('names the source of every value: default, file, edgecore.yaml, environment; secrets redacted', async () => {
    const edgecore = join(work, 'edgecore.yaml');
    writeFileSync(edgecore, stringify({ modules: { edged: { hostnameOverride: 'from-edgecore' }, eventBus: { mqttMode: 2, mqttServerExternal: 'tcp://10.1.2.3:1883' } } }));
    const file = writeConfig({ ...config, node: { name: 'from-file' }, broker: undefined as unknown as object, admin: { socket: join(work, 'view.sock') } } as never, join(work, 'view.yaml'));
    writeFileSync(file, readFileSync(file, 'utf8') + 'fetch:\n  bandwidth: 1MiB\n');
    const env = { MODELD_LIMITS__FETCHES: '3', MODELD_BROKER__PASSWORD: 'hunter2' };
    const r = await runCli(file, ['config', 'view', '--edgecore', edgecore], { env });
    expect(r.code, r.stderr).toBe(0);
    const row = (key: string) => r.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.replace(/\s+/g, ' ');
    expect(row('node.name')).toBe(`node.name from-file file ${file}`);
    expect(row('broker.url')).toBe(`broker.url tcp://10.1.2.3:1883 edgecore.yaml ${edgecore}`);
    expect(row('limits.fetches')).toBe('limits.fetches 3 environment MODELD_LIMITS__FETCHES');
    expect(row('limits.installs')).toBe('limits.installs 1 default');
    expect(row('fetch.bandwidth')).toBe(`fetch.bandwidth 1048576 file ${file}`);
    expect(row('broker.password')).toBe('broker.password <redacted> environment MODELD_BROKER__PASSWORD');
    expect(r.stdout).not.toContain('hunter2');
    expect(r.stderr).toMatch(/loaded now, as `modeld run` would/);
    const j = JSON.parse((await runCli(file, ['config', 'view', '--edgecore', edgecore, '-o', 'json'], { env })).stdout);
    expect(j.entries).toContainEqual({ key: 'limits.fetches', value: 3, source: 'env', from: 'MODELD_LIMITS__FETCHES' });
  });

  it("shows the running daemon's configuration, and says when the environment here differs", async () => {
    const r = await cli('config', 'view');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/of the running daemon \(pid \d+\)/);
    expect(r.stdout).toMatch(/\nstateDir +\S+ +file /);
    const other = await runCli(configFile, ['config', 'view'], { env: { MODELD_LIMITS__FETCHES: '5' } });
    expect(other.stdout).toMatch(/\nlimits\.fetches +2 +default\n/);
    expect(other.stderr).toMatch(/another configuration now: restart the daemon/);
  });
});

describe('shell completion', () => {
  let bin: string;
  beforeAll(() => {
    // `modeld` on PATH, as installed, so the script can complete model names.
    bin = join(work, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'modeld'), `#!/bin/sh\nexec ${CLI_ARGV.map((a) => `'${a}'`).join(' ')} --config '${configFile}' "$@"\n`);
    chmodSync(join(bin, 'modeld'), 0o755);
  });

  it('bash: commands, options, -o formats and model names', async () => {
    const script = (await cli('completion', 'bash')).stdout;
    writeFileSync(join(work, 'modeld.bash'), script);
    const complete = (...words: string[]) => {
      const r = spawnSync('bash', ['-c', `source '${join(work, 'modeld.bash')}'; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _modeld; printf '%s\\n' "\${COMPREPLY[@]}"`], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim().split('\n').sort();
    };
    expect(complete('modeld', 'de')).toEqual(['defer', 'delete', 'describe']);
    expect(complete('modeld', 'rollback', '--re')).toEqual(['--release']);
    expect(complete('modeld', 'get', '-o', '')).toEqual(['json', 'name', 'wide', 'yaml']);
    expect(complete('modeld', 'describe', 'l')).toEqual(['lin']);
    expect(complete('modeld', 'config', '')).toEqual(['view']);
  });

  it.skipIf(spawnSync('zsh', ['--version']).status !== 0)('zsh: the same, through compadd', async () => {
    const script = (await cli('completion', 'zsh')).stdout;
    writeFileSync(join(work, '_modeld'), script);
    // compadd and _describe stand in for the completion system: they print what they would offer.
    const complete = (...words: string[]) => {
      const r = spawnSync(
        'zsh',
        ['-fc', `compadd() { while [[ $1 == -* ]]; do [[ $1 == -- ]] && { shift; break }; shift; done; print -l -- "$@" }; _describe() { print -l -- \${(P)\${@[-1]}%%:*} }; _files() { print FILES }; source '${join(work, '_modeld')}'; words=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}; PREFIX='${words.at(-1)}'; _modeld | grep -- "^$PREFIX"`],
        { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeout: 60_000 },
      );
      expect(r.stderr).toBe('');
      return r.stdout.trim().split('\n').sort();
    };
    expect(complete('modeld', 'de')).toEqual(['defer', 'delete', 'describe']);
    expect(complete('modeld', 'rollback', '--re')).toEqual(['--release']);
    expect(complete('modeld', 'get', '-o', '')).toEqual(['json', 'name', 'wide', 'yaml']);
    expect(complete('modeld', 'describe', 'l')).toEqual(['lin']);
  });
});
