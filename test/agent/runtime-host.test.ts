import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { checkHost } from '../../agent/cli/doctor-checks.js';
import type { ModeldError } from '../../agent/errors.js';
import { silentLogger } from '../../agent/log.js';
import { hostCommand } from '../../agent/runtime/host-client.js';
import { isRunning } from '../../agent/runtime/pidfiles.js';
import { Serving, type ServeTarget, type ServingDeps } from '../../agent/runtime/serving.js';
import { inferX, makeModelDir, servingEnv, writeCountModel } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor, waitForValue } from '../helpers/wait.js';

// The runtime host with real onnxruntime sessions in a real process: many models in one host,
// the host's life apart from the agent's, a host killed with -9 or hung on a run restored with
// every model, node readiness.

const ABORT_ON_LOAD = resolve(import.meta.dirname, '../fixtures/abort-on-load.cjs');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Env = ReturnType<typeof servingEnv>;

function newServing(env: Env, extra: Partial<ServingDeps> = {}): Serving {
  const serving = new Serving({ config: env.config, paths: env.paths, log: silentLogger(), ...extra });
  cleanups.push(async () => {
    await serving.close();
    await serving.stopHost();
  });
  return serving;
}

function setup(over: Parameters<typeof servingEnv>[0] = {}) {
  const env = servingEnv({ ...over, serving: { probeIntervalMs: 100, probeTimeoutMs: 1000, probeFailures: 3, ...(over.serving ?? {}) } });
  cleanups.push(() => env.cleanup());
  const target = (name: string, version: string, extra: Partial<ServeTarget> = {}): ServeTarget => ({
    namespace: 'default',
    name,
    modelName: name,
    version,
    versionDir: env.paths.treeDir('default', name, { version }),
    replicas: 1,
    ...extra,
  });
  return { env, target };
}

/** The runtime hosts this test starts preload test/fixtures/abort-on-load.cjs (they inherit NODE_OPTIONS). */
function useAbortOnLoad() {
  const saved = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `${saved ? `${saved} ` : ''}--require ${ABORT_ON_LOAD}`;
  cleanups.push(() => {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  });
}

/** y = x * w + b for model m<i>: w = i + 1, b = i. */
const MODELS = Array.from({ length: 10 }, (_, i) => ({ name: `m${i}`, w: i + 1, b: i }));

async function serveAll(serving: Serving, env: Env, target: ReturnType<typeof setup>['target']) {
  for (const m of MODELS) {
    makeModelDir(env.paths.treeDir('default', m.name, { version: '1' }), { w: m.w, b: m.b });
    await serving.activate(target(m.name, '1'));
  }
}

async function allAnswer(url: string) {
  const rs = await Promise.all(MODELS.map((m) => inferX(url, m.name, [2])));
  return rs.every((r, i) => r.status === 200 && r.body.outputs[0].data[0] === 2 * MODELS[i].w + MODELS[i].b);
}

describe('the runtime host', { timeout: 180_000 }, () => {
  it('holds ten models in one process and answers each correctly under concurrent load', async () => {
    const { env, target } = setup();
    const serving = newServing(env);
    await serving.start();
    await serveAll(serving, env, target);
    const state = await serving.host.state();
    expect(state.routes.map((r) => [r.name, r.kind, r.readyReplicas])).toEqual(MODELS.map((m) => [m.name, 'session', 1]));
    // No runtime process of their own: one host pid serves all, no instance pid file.
    expect(readFileSync(join(env.paths.runDir, 'host-routes.json'), 'utf8')).toContain('"m9"');
    const pool = new Pool(serving.gatewayUrl(), { connections: 8 });
    cleanups.push(() => pool.close());
    const wrong: unknown[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 60; i++) {
          const m = MODELS[(w * 7 + i) % MODELS.length];
          const x = w * 100 + i;
          const res = await pool.request({ path: `/v2/models/${m.name}/infer`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [x] }] }) });
          const body = (await res.body.json()) as { model_name?: string; outputs?: Array<{ data: number[] }> };
          if (res.statusCode !== 200 || body.model_name !== m.name || body.outputs?.[0].data[0] !== Math.fround(x * m.w + m.b)) wrong.push({ m: m.name, x, status: res.statusCode, body });
        }
      }),
    );
    expect(wrong).toEqual([]);
    expect((await fetch(`${serving.gatewayUrl()}/v2/health/ready`)).status).toBe(200);
  });

  it('a new agent finds what the host serves and does not reload it (same version and digest)', async () => {
    const { env, target } = setup();
    const first = newServing(env);
    await first.start();
    makeModelDir(env.paths.treeDir('default', 'lin', { version: '1' }), { w: 2, b: 1 });
    await first.activate(target('lin', '1', { sha256: 'a'.repeat(64) }));
    const before = (await first.host.state()).routes[0].sessions;
    await first.close(); // the agent goes; the host stays
    expect((await inferX(first.gatewayUrl(), 'lin', [1])).body.outputs[0].data).toEqual([3]);

    const second = newServing(env);
    await second.start();
    expect(second.state('default', 'lin')).toMatchObject({ version: '1', readyReplicas: 1, isolation: 'host' });
    await second.activate(target('lin', '1', { sha256: 'a'.repeat(64) }));
    expect((await second.host.state()).routes[0].sessions).toEqual(before);
    // Other bytes under the same version name are another tree: loaded anew.
    await second.activate(target('lin', '1', { sha256: 'b'.repeat(64) }));
    expect((await second.host.state()).routes[0].sessions).not.toEqual(before);
  });

  it('kill -9 of the host: the agent starts it again and every model is restored, counted as a host restart', async () => {
    const { env, target } = setup();
    const restarts: Array<{ pid: number }> = [];
    const serving = newServing(env, { onHostRestart: (i) => restarts.push(i) });
    await serving.start();
    await serveAll(serving, env, target);
    const pid = (await serving.host.state()).pid;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => restarts.length === 1, WAIT_MS, 'the host restart to be seen');
    await waitFor(() => allAnswer(serving.gatewayUrl()).catch(() => false), WAIT_MS, 'every model answering again');
    const state = await serving.host.state();
    expect(state.pid).not.toBe(pid);
    expect(restarts[0].pid).toBe(state.pid);
    expect(state.routes.map((r) => r.readyReplicas)).toEqual(MODELS.map(() => 1));
    // The agent's view follows at its next look at the host (every serving.probeIntervalMs).
    await waitFor(() => serving.state('default', 'm3')?.readyReplicas === 1, WAIT_MS, "the agent's state to see m3 ready");
    expect(serving.state('default', 'm3')).toMatchObject({ version: '1', readyReplicas: 1 });
  });

  it('a host restarted while no agent runs serves every model from its route table', async () => {
    // A fixed endpoint port, as on a node (8000): the new host listens where the old one did.
    const { env, target } = setup({ gateway: { port: await freePort() } });
    const serving = newServing(env);
    await serving.start();
    await serveAll(serving, env, target);
    const pid = (await serving.host.state()).pid;
    await serving.close(); // no agent from here on
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !isRunning(pid), WAIT_MS, 'the host gone');
    // What systemd does (Restart=always): the same command again, no agent involved.
    const [cmd, ...args] = hostCommand();
    const host = spawnTree(cmd, [...args, '--config', join(env.paths.runDir, 'host-config.json')], { stdio: 'ignore' });
    cleanups.push(() => host.end());
    await waitFor(() => allAnswer(serving.gatewayUrl()).catch(() => false), WAIT_MS, 'every model answering from the restarted host');
  });

  it('a session run that hangs restarts the host, every model restored; the hang is reported with the model', async () => {
    const { env, target } = setup({ serving: { sessionHangMs: 1500 } });
    const restarts: Array<{ lastHang?: { models?: string[]; blockedMs: number } }> = [];
    const serving = newServing(env, { onHostRestart: (i) => restarts.push(i) });
    await serving.start();
    await serveAll(serving, env, target);
    writeCountModel(join(env.paths.treeDir('default', 'count', { version: '1' }), 'model.onnx'));
    await serving.activate(target('count', '1'));
    const count = (n: number) =>
      fetch(`${serving.gatewayUrl()}/v2/models/count/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'n', shape: [], datatype: 'INT64', data: [n] }] }) }).then(
        async (r) => ({ status: r.status, body: (await r.json()) as any }),
        () => ({ status: 0, body: undefined }),
      );
    expect(await count(5)).toMatchObject({ status: 200, body: { outputs: [{ data: [5] }] } });
    const pid = (await serving.host.state()).pid;
    // Days of looping: onnxruntime cannot cancel it; only a new host serves again.
    const hung = await count(1e12);
    expect(hung.status).toBe(0); // the connection died with the host
    await waitFor(() => restarts.length === 1, WAIT_MS, 'the host restart to be seen');
    expect(restarts[0].lastHang!.models).toContain('default/count');
    expect(restarts[0].lastHang!.blockedMs).toBeGreaterThan(1500);
    expect(isRunning(pid)).toBe(false);
    await waitFor(() => allAnswer(serving.gatewayUrl()).catch(() => false), WAIT_MS, 'every model answering again');
    expect(await count(7)).toMatchObject({ status: 200, body: { outputs: [{ data: [7] }] } });
  });

  it('a version whose load crashes the host (SIGABRT in onnxruntime) is not restored again: reported StartFailed, every other model restored', async () => {
    const { env, target } = setup();
    useAbortOnLoad();
    const failures: Array<{ version: string; code: string; message: string }> = [];
    const restarts: Array<{ pid: number }> = [];
    const serving = newServing(env, { onHostRestart: (i) => restarts.push(i) });
    serving.onServingFailure((t, err) => failures.push({ version: t.version, code: err.code, message: err.message }));
    await serving.start();
    await serveAll(serving, env, target);
    const dir = makeModelDir(env.paths.treeDir('default', 'crashy', { version: '1' }), { w: 1, b: 0 });
    await serving.activate(target('crashy', '1'));
    // From here on its load aborts the process; the host restarted next restores it: it dies.
    writeFileSync(join(dir, 'ABORT_ON_LOAD'), '');
    process.kill((await serving.host.state()).pid, 'SIGKILL');
    await waitFor(() => failures.length > 0, WAIT_MS, 'the crashed load to be reported');
    expect(failures).toEqual([{ version: '1', code: 'StartFailed', message: expect.stringMatching(/crashed while loading it/) }]);
    // The host that runs now skipped it and restored all the others; it is done restoring, so
    // nothing is left that could crash it.
    const state = await waitForValue(async () => {
      const s = await serving.host.state();
      return !s.restoring && (await allAnswer(serving.gatewayUrl())) ? s : undefined;
    }, WAIT_MS, 'every other model answering');
    expect(state.diedLoading?.map((d) => [d.name, d.version, d.cause])).toEqual([['crashy', '1', 'crash']]);
    expect(state.routes.find((r) => r.name === 'crashy')).toMatchObject({ readyReplicas: 0, error: expect.stringMatching(/crashed while loading it/) });
    expect((await inferX(serving.gatewayUrl(), 'crashy', [1])).status).toBe(503);
    expect(restarts.length).toBeGreaterThanOrEqual(1);
    expect(restarts.at(-1)!.pid).toBe(state.pid);
  });

  it('a new version whose load crashes the host: activate fails StartFailed (not retryable), the previous version and the other models serve', async () => {
    const { env, target } = setup();
    useAbortOnLoad();
    const serving = newServing(env);
    await serving.start();
    for (const m of MODELS.slice(0, 3)) {
      makeModelDir(env.paths.treeDir('default', m.name, { version: '1' }), { w: m.w, b: m.b });
      await serving.activate(target(m.name, '1'));
    }
    makeModelDir(env.paths.treeDir('default', 'm0', { version: '2' }), { w: 7, b: 0 });
    writeFileSync(join(env.paths.treeDir('default', 'm0', { version: '2' }), 'ABORT_ON_LOAD'), '');
    const err = await serving.activate(target('m0', '2')).then(
      () => undefined,
      (e: ModeldError) => e,
    );
    expect(err).toMatchObject({ code: 'StartFailed', retryable: false, message: expect.stringMatching(/crashed while loading it/) });
    const state = await serving.host.state();
    expect(state.diedLoading?.map((d) => [d.name, d.version])).toEqual([['m0', '2']]);
    await waitFor(async () => !(await serving.host.state()).restoring, WAIT_MS, 'the restarted host to restore');
    for (const m of MODELS.slice(0, 3)) expect((await inferX(serving.gatewayUrl(), m.name, [2])).body.outputs[0].data).toEqual([2 * m.w + m.b]);
    expect(serving.state('default', 'm0')).toMatchObject({ version: '1', readyReplicas: 1 });
    // Another version serving for the model ends the record.
    makeModelDir(env.paths.treeDir('default', 'm0', { version: '3' }), { w: 5, b: 0 });
    await serving.activate(target('m0', '3'));
    expect((await serving.host.state()).diedLoading).toBeUndefined();
    expect((await inferX(serving.gatewayUrl(), 'm0', [2])).body.outputs[0].data).toEqual([10]);
  });

  it('/v2/health/ready is 200 only when every model that should serve has a ready session', async () => {
    const { env, target } = setup({ gateway: { port: await freePort() } });
    const serving = newServing(env);
    await serving.start();
    const url = serving.gatewayUrl();
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200); // nothing to serve
    await serveAll(serving, env, target);
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    // m4's files vanish; a restarted host cannot restore it: the node is not ready, and says which.
    const pid = (await serving.host.state()).pid;
    await serving.close();
    (await import('node:fs')).rmSync(env.paths.treeDir('default', 'm4', { version: '1' }), { recursive: true, force: true });
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !isRunning(pid), WAIT_MS, 'the host gone');
    const [cmd, ...args] = hostCommand();
    const host = spawnTree(cmd, [...args, '--config', join(env.paths.runDir, 'host-config.json')], { stdio: 'ignore' });
    cleanups.push(() => host.end());
    // The event: the new host is done restoring (every model it could load is loaded).
    await waitFor(async () => {
      const s = await serving.host.state().catch(() => undefined);
      return !!s && s.pid !== pid && !s.restoring;
    }, WAIT_MS, 'the restarted host to finish restoring');
    const r = await fetch(`${url}/v2/health/ready`);
    expect(r.status).toBe(503);
    expect(((await r.json()) as { notReady?: string[] }).notReady).toEqual(['m4']);
    expect((await inferX(url, 'm9', [1])).status).toBe(200);
    expect((await inferX(url, 'm4', [1])).status).toBe(503);
  });

  it('modeld doctor checks the host: its socket answers and what it serves; warns when nothing answers', async () => {
    const { env, target } = setup();
    expect(await checkHost(env.config, 500)).toMatchObject({ name: 'host', status: 'warn', message: expect.stringMatching(/does not answer/) });
    const serving = newServing(env);
    await serving.start();
    makeModelDir(env.paths.treeDir('default', 'lin', { version: '1' }), { w: 2, b: 1 });
    await serving.activate(target('lin', '1'));
    expect(await checkHost(env.config, 2000)).toMatchObject({ name: 'host', status: 'ok', message: expect.stringMatching(/1 models: lin@1 \(session, native, 1\/1 ready\)/) });
  });
});
