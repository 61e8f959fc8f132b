import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { isRunning, reapOrphans, removePidFile, writePidFile } from '../../agent/runtime/pidfiles.js';
import { builtinServerCommand } from '../../agent/runtime/runtime-plan.js';
import { Serving } from '../../agent/runtime/serving.js';
import { inferX, makeModelDir, servingEnv } from '../helpers/models.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// An agent killed with -9 leaves its runtimes running (they lead their own process groups);
// the next agent's start kills them from the pid files, and only them.

const OWNER = fileURLToPath(new URL('../fixtures/serving-owner.ts', import.meta.url));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});


/** The stand-in agent; cleanups end it with every runtime it started, whatever the test did. */
function startOwner(stateDir: string, versionDir: string, replicas: number): Promise<{ tree: ProcessTree; pids: number[]; url: string }> {
  const [node, ...pre] = builtinServerCommand().slice(0, -1); // node + tsx loader
  const tree = spawnTree(node, [...pre, OWNER, stateDir, versionDir, String(replicas)], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => tree.end());
  const child = tree.child;
  let out = '';
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (c) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ tree, ...JSON.parse(line) });
    });
    child.once('exit', (code) => reject(new Error(`owner exited ${code}: ${err}`)));
  });
}

describe('orphaned runtimes', () => {
  it('kill -9 of the owning agent, then a new agent starts: no runtime of the old one remains', async () => {
    // isolation: process — the instances are the agent's children (the runtime host's sessions are not).
    const env = servingEnv({ serving: { isolation: 'process' } });
    cleanups.push(() => env.cleanup());
    const dir = makeModelDir(env.paths.treeDir('default', 'lin', { version: '1' }), { w: 2, b: 1 });
    const owner = await startOwner(env.root, dir, 2);
    expect(owner.pids).toHaveLength(2);
    expect((await inferX(owner.url, 'lin', [1])).body.model_version).toBe('1');

    owner.tree.child.kill('SIGKILL');
    await owner.tree.exited;
    // The runtimes outlive the killed agent: that is what reaping is for.
    expect(owner.pids.every(isRunning)).toBe(true);
    const pidFiles = () => readdirSync(env.paths.runDir).filter((f) => f.endsWith('.pid'));
    expect(pidFiles().sort()).toEqual(['default_lin_1_0.pid', 'default_lin_1_1.pid']);

    const serving = new Serving({ config: env.config, paths: env.paths, log: silentLogger() });
    cleanups.push(async () => {
      await serving.close();
      await serving.stopHost();
    });
    await serving.start();
    await waitFor(() => owner.pids.every((p) => !isRunning(p)), WAIT_MS, 'orphans gone');
    expect(pidFiles()).toEqual([]);
    // Serving resumes from local state without duplicates.
    await serving.activate({ namespace: 'default', name: 'lin', modelName: 'lin', version: '1', versionDir: dir, replicas: 2 });
    expect((await inferX(serving.gatewayUrl(), 'lin', [1])).body.model_version).toBe('1');
  });

  it('leaves alone a process whose pid was reused by another command', async () => {
    const env = servingEnv();
    cleanups.push(() => env.cleanup());
    const otherTree = spawnTree(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    cleanups.push(() => otherTree.end());
    const other = otherTree.child;
    writePidFile(env.paths.runDir, 'default_lin_1_0.pid', { pid: other.pid!, argv: [process.execPath, 'agent/runtime/onnx-server.ts', '--port', '1'], model: 'default/lin', version: '1', instance: 0 });
    expect(await reapOrphans(env.paths.runDir, { graceMs: 100 })).toEqual([]);
    expect(isRunning(other.pid!)).toBe(true);
    expect(readdirSync(env.paths.runDir)).toEqual([]);
  });

  it('an instance removes its pid file only while the file still names it', () => {
    const env = servingEnv();
    cleanups.push(() => env.cleanup());
    const rec = { pid: 4242, argv: ['x'], model: 'default/lin', version: '1', instance: 0 };
    writePidFile(env.paths.runDir, 'default_lin_1_0.pid', { ...rec, pid: 5353 });
    removePidFile(env.paths.runDir, 'default_lin_1_0.pid', 4242);
    expect(readdirSync(env.paths.runDir)).toEqual(['default_lin_1_0.pid']);
    removePidFile(env.paths.runDir, 'default_lin_1_0.pid', 5353);
    expect(readdirSync(env.paths.runDir)).toEqual([]);
  });
});
