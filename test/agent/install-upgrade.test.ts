import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ModelContent } from '../../shared/index.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// Upgrading a node in place: a release built from an older commit (PREVIOUS: before the
// version-and-digest layout `versions/<v>@<sha256>` and its state.db migration) is installed
// with its own install.sh into a scratch root and serves a model delivered over MQTT; this
// tree's release is installed over it with this install.sh while the old daemon still serves;
// the old daemon is stopped and the new one started on the same state: the state and config are
// kept, state.db and the on-disk layout are migrated forward, and the model serves again from
// local state without the cloud sending anything. Needs the commit in the clone (git history).

const ROOT = resolve(import.meta.dirname, '../..');
/** main~73: the last commit before the layout and schema change of 5b5a613. */
const PREVIOUS = '9495603';
const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const MINUTES = 60_000;
const NODE_NAME = 'edge-up';

let work: string;
let broker: Broker;
let cloud: Cloud;
let http: Server;
let oldTarball: string;
let newTarball: string;

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, env: { ...process.env, TMPDIR: ownTmp(), ...opts.env }, timeout: 15 * MINUTES, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
/**
 * A temp folder inside `work` for the builds and daemons (removed with it): a run of this file
 * once left `.ses` and `mat-debug-<pid>.log` in the run's TMPDIR, from a process not found.
 */
const ownTmp = () => {
  const dir = join(work, 'tmp');
  mkdirSync(dir, { recursive: true });
  return dir;
};
const tarballOf = (r: { stdout: string }) => r.stdout.trim().split('\n').at(-1)!.split(' ')[0];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'install-upgrade-'));
  if (sh('git', ['-C', ROOT, 'cat-file', '-e', `${PREVIOUS}^{commit}`]).code !== 0) throw new Error(`commit ${PREVIOUS} is not in this clone: the upgrade test needs the git history`);
  // The previous release, built by that commit's own build-release.sh from its own tree.
  const old = join(work, 'previous');
  mkdirSync(old);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive ${PREVIOUS} | tar -x -C "${old}"`]);
  symlinkSync(join(ROOT, 'node_modules'), join(old, 'node_modules'));
  // Its agent compiled with this tsc (its tests no longer typecheck against today's packages, and
  // tsc emits all the same), then packed by its script as it was (--skip-build: the dist/ there).
  sh(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json', '--outDir', join(old, 'dist')], { cwd: old });
  if (!existsSync(join(old, 'dist/agent/cli/index.js'))) throw new Error('the previous agent did not compile');
  const builtOld = sh(join(old, 'scripts/build-release.sh'), ['--skip-build', '--out', join(work, 'out-old')], { cwd: old });
  if (builtOld.code !== 0) throw new Error(`the previous release did not build: ${builtOld.stderr.slice(-2000)}`);
  oldTarball = tarballOf(builtOld);
  const builtNew = sh(join(ROOT, 'scripts/build-release.sh'), ['--out', join(work, 'out-new')]);
  if (builtNew.code !== 0) throw new Error(`this release did not build: ${builtNew.stderr.slice(-2000)}`);
  newTarball = tarballOf(builtNew);
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
}, 30 * MINUTES);

afterAll(async () => {
  await cloud?.close();
  await broker?.close();
  await new Promise((r) => (http ? http.close(r) : r(undefined)));
  rmSync(work, { recursive: true, force: true });
});

describe('install.sh over an installed release', () => {
  it('keeps state and config, migrates state.db and the layout forward, and serves again', { timeout: 20 * MINUTES }, async () => {
    const root = mkdtempSync(join(work, 'root-'));
    const stateDir = join(root, 'var/lib/modeld');
    // The previous release's install.sh, from its tarball, with this Node 24 (it bundled none).
    const unpacked = mkdtempSync(join(work, 'old-tree-'));
    execFileSync('tar', ['-xzf', oldTarball, '-C', unpacked]);
    const first = sh(join(unpacked, `modeld-${version}/scripts/install.sh`), ['--root', root, '--node', process.execPath, oldTarball]);
    expect(first.code, first.stderr).toBe(0);
    expect(existsSync(join(root, 'opt/modeld/node'))).toBe(false); // the old release: no bundled node

    const gatewayPort = await freePort();
    const config = join(root, 'etc/modeld/config.yaml');
    writeFileSync(
      config,
      stringify({
        node: { name: NODE_NAME, address: '127.0.0.1' },
        broker: { url: broker.url, reconnectMs: 200 },
        stateDir,
        gateway: { bind: '127.0.0.1', port: gatewayPort },
        admin: { socket: join(root, 'run/modeld/modeld.sock'), metricsPort: 0 },
        serving: { startTimeoutMs: 120_000 },
      }),
    );
    mkdirSync(join(root, 'run/modeld'), { recursive: true });
    const start = (): ProcessTree => spawnTree(join(root, 'opt/modeld/bin/modeld'), ['--config', config, 'run'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: ownTmp(), MODELD_CONFIG: '' } });
    const infer = async () => {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/v2/models/linear/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [10] }] }),
      }).catch(() => undefined);
      return res?.ok ? (((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[0].data[0] ?? null) : null;
    };

    // The previous agent: a model delivered and serving.
    const archive = await makeModelArchive(join(work, 'linear-1.tar.gz'), { w: 2, b: 1 });
    const body = readFileSync(archive.path);
    http = createServer((_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(http.address() as { port: number }).port}/linear-1.tar.gz`;
    let daemon = start();
    try {
      await waitFor(() => cloud.hellos.includes(NODE_NAME), WAIT_MS, 'hello from the previous agent');
      const content: ModelContent = {
        metadata: { name: 'linear', namespace: 'default', uid: 'u-up', generation: 1 },
        spec: { modelName: 'linear', deployToLayer: 'edge', frameworkType: 'onnx', manifest: [{ version: '1', downloadURL: url, sha256sum: archive.sha256 }], targetVersion: '1' },
      };
      await cloud.update(NODE_NAME, content);
      await cloud.waitStatus((s) => s.phase === 'Serving', { timeoutMs: 120_000, what: 'v1 serving on the previous release' });
      expect(await infer()).toBe(21);
      const versions = join(stateDir, 'models/default/linear/versions');
      expect(readdirSync(versions)).toEqual(['1']); // the previous, name-keyed layout

      // The upgrade, with the previous daemon still serving.
      const up = sh(join(ROOT, 'scripts/install.sh'), ['--root', root, newTarball]);
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toMatch(/kept .*config\.yaml/);
      expect(await infer()).toBe(21);
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited).code).toBe(0);
    } finally {
      await daemon.end();
    }
    const before = new Database(join(stateDir, 'state.db'), { readonly: true });
    const schemaBefore = before.pragma('user_version', { simple: true }) as number;
    before.close();

    // The new agent on the same state, with no broker message: it migrates and serves again.
    await broker.stop();
    daemon = start();
    try {
      await waitFor(async () => (await infer()) === 21, 120_000, 'v1 serving again after the upgrade, from local state');
      expect(readFileSync(join(root, 'opt/modeld/RELEASE'), 'utf8')).toMatch(/^node=bundled 24\./m);
      expect(readdirSync(join(stateDir, 'models/default/linear/versions'))).toEqual([`1@${archive.sha256}`]); // layout migrated
      const db = new Database(join(stateDir, 'state.db'), { readonly: true });
      const schemaAfter = db.pragma('user_version', { simple: true }) as number;
      db.close();
      expect(schemaAfter).toBeGreaterThan(schemaBefore);
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited).code).toBe(0);
    } finally {
      await daemon.end();
      await broker.start();
    }
  });
});
