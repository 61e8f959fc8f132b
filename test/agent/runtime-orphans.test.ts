import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { isRunning, reapOrphans, removePidFile, writePidFile } from '../../agent/runtime/pidfiles.js';
import { builtinServerCommand } from '../../agent/runtime/runtime-plan.js';
import { Serving } from '../../agent/runtime/serving.js';
import { inferX, makeModelDir, servingEnv } from '../helpers/models.js';

// An agent killed with -9 leaves its runtimes running (they lead their own process groups);
// the next agent's start kills them from the pid files, and only them.

const OWNER = fileURLToPath(new URL('../fixtures/serving-owner.ts', import.meta.url));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function waitFor(cond: () => boolean, what: string, ms = 30_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function startOwner(stateDir: string, versionDir: string, replicas: number): Promise<{ child: ChildProcess; pids: number[]; url: string }> {
  const [node, ...pre] = builtinServerCommand().slice(0, -1); // node + tsx loader
  const child = spawn(node, [...pre, OWNER, stateDir, versionDir, String(replicas)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (c) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ child, ...JSON.parse(line) });
    });
    child.once('exit', (code) => reject(new Error(`owner exited ${code}: ${err}`)));
  });
}

describe('orphaned runtimes', () => {
  it('kill -9 of the owning agent, then a new agent starts: no runtime of the old one remains', async () => {
    const env = servingEnv();
    cleanups.push(() => env.cleanup());
    const dir = makeModelDir(env.paths.treeDir('default', 'lin', { version: '1' }), { w: 2, b: 1 });
    const owner = await startOwner(env.root, dir, 2);
    cleanups.push(() => {
      for (const p of owner.pids) if (isRunning(p)) process.kill(-p, 'SIGKILL');
    });
    expect(owner.pids).toHaveLength(2);
    expect((await inferX(owner.url, 'lin', [1])).body.model_version).toBe('1');

    owner.child.kill('SIGKILL');
    await new Promise((r) => owner.child.once('exit', r));
    // The runtimes outlive the killed agent: that is what reaping is for.
    expect(owner.pids.every(isRunning)).toBe(true);
    expect(readdirSync(env.paths.runDir).sort()).toEqual(['default_lin_1_0.pid', 'default_lin_1_1.pid']);

    const serving = new Serving({ config: env.config, paths: env.paths, log: silentLogger() });
    cleanups.push(() => serving.close());
    await serving.start();
    await waitFor(() => owner.pids.every((p) => !isRunning(p)), 'orphans gone');
    expect(readdirSync(env.paths.runDir)).toEqual([]);
    // Serving resumes from local state without duplicates.
    await serving.activate({ namespace: 'default', name: 'lin', modelName: 'lin', version: '1', versionDir: dir, replicas: 2 });
    expect((await inferX(serving.gatewayUrl(), 'lin', [1])).body.model_version).toBe('1');
  });

  it('leaves alone a process whose pid was reused by another command', async () => {
    const env = servingEnv();
    cleanups.push(() => env.cleanup());
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    cleanups.push(() => {
      if (isRunning(other.pid!)) process.kill(-other.pid!, 'SIGKILL');
    });
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
