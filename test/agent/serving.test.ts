import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { ModeldError } from '../../agent/errors.js';
import { silentLogger } from '../../agent/log.js';
import { isRunning } from '../../agent/runtime/pidfiles.js';
import { Serving, type ServeTarget } from '../../agent/runtime/serving.js';
import { fixtureRuntime, inferX, makeModelDir, servingEnv, spawnedRuntime } from '../helpers/models.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// Serving end to end: real onnxruntime sessions in the runtime host (and, with isolation: process,
// real onnx runtime processes behind it), switched blue/green.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VERSIONS: Record<string, { w: number; b: number }> = { '1': { w: 2, b: 1 }, '2': { w: 3, b: -1 } };

async function setup(over: Parameters<typeof servingEnv>[0] = {}) {
  const env = servingEnv(over);
  const failures: Array<{ version: string; err: ModeldError }> = [];
  const serving = new Serving({ config: env.config, paths: env.paths, log: silentLogger() });
  serving.onServingFailure((t, err) => failures.push({ version: t.version, err }));
  cleanups.push(() => env.cleanup());
  cleanups.push(async () => {
    await serving.close();
    await serving.stopHost();
  });
  await serving.start();
  for (const [v, wb] of Object.entries(VERSIONS)) makeModelDir(env.paths.treeDir('default', 'lin', { version: v }), wb);
  const target = (version: string, extra: Partial<ServeTarget> = {}): ServeTarget => ({
    namespace: 'default',
    name: 'lin',
    modelName: 'lin',
    version,
    versionDir: env.paths.treeDir('default', 'lin', { version: version }),
    replicas: 1,
    ...extra,
  });
  return { env, serving, failures, target, url: serving.gatewayUrl() };
}

const pids = (serving: Serving) => {
  const g = (serving as unknown as { models: Map<string, { group?: { instances: Array<{ pid?: number }> } }> }).models;
  return [...g.values()].flatMap((s) => s.group?.instances.map((i) => i.pid!) ?? []);
};

/** What serves each replica: instance pids (process), or the host's session ids (host). */
async function servers(serving: Serving, mode: Isolation): Promise<Array<number | string>> {
  if (mode === 'process') return pids(serving);
  return (await serving.host.state()).routes.flatMap((r) => r.sessions ?? []);
}

/** Is this replica still loaded or running? */
async function stillThere(serving: Serving, mode: Isolation, who: Array<number | string>): Promise<boolean[]> {
  if (mode === 'process') return who.map((p) => isRunning(p as number));
  const now = new Set(await servers(serving, mode));
  return who.map((id) => now.has(id));
}

type Isolation = 'host' | 'process';

describe.each([['host'], ['process']] as Array<[Isolation]>)('serving through the node endpoint, isolation: %s', (mode) => {
  const setupMode = (over: Parameters<typeof servingEnv>[0] = {}) => setup({ ...over, serving: { isolation: mode, ...(over.serving ?? {}) } });

  it('answers with each version’s real output and metadata, and releases the old version after a switch', async () => {
    const { serving, target, url } = await setupMode();
    const a = await serving.activate(target('1'));
    expect(a.url).toBe(`${url}/v2/models/lin`);
    const r1 = await inferX(url, 'lin', [1, 2, -3]);
    expect(r1.status).toBe(200);
    expect(r1.body).toMatchObject({ model_name: 'lin', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [3, 1], data: [3, 5, -5] }] });
    const meta = await (await fetch(`${url}/v2/models/lin`)).json();
    expect(meta).toEqual({ name: 'lin', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }] });
    expect(serving.state('default', 'lin')).toEqual({ version: '1', replicas: 1, readyReplicas: 1, url: a.url, isolation: mode, ...(mode === 'host' ? { backend: 'native' } : {}) });
    const old = await servers(serving, mode);
    expect(old).toHaveLength(1);

    await serving.activate(target('2', { replicas: 2 }));
    const r2 = await inferX(url, 'lin', [1, 2, -3]);
    expect(r2.body).toMatchObject({ model_version: '2', outputs: [{ data: [2, 5, -10] }] });
    expect(serving.state('default', 'lin')).toMatchObject({ version: '2', replicas: 2, readyReplicas: 2 });
    expect(await stillThere(serving, mode, old)).toEqual([false]);
    expect(await servers(serving, mode)).toHaveLength(2);
    const list = await (await fetch(`${url}/v2/models`)).json();
    expect(list).toEqual({ models: [{ name: 'lin', version: '2', namespace: 'default', resource: 'lin', state: 'READY' }] });
    expect(serving.served()).toEqual([{ namespace: 'default', name: 'lin', modelName: 'lin', version: '2' }]);
  });

  it('tells onRouted when the new version takes traffic, before the old one is drained and released', async () => {
    const { serving, target, url } = await setupMode();
    await serving.activate(target('1'));
    const old = await servers(serving, mode);
    let seen: { oldRunning: boolean } | undefined;
    let answer: Promise<{ status: number; body: any }> | undefined;
    let resolved = false;
    await serving.activate(target('2'), {
      onRouted: () => {
        seen = { oldRunning: mode === 'host' ? !resolved : old.every((p) => isRunning(p as number)) };
        answer = inferX(url, 'lin', [1]);
      },
    });
    resolved = true;
    expect(seen).toEqual({ oldRunning: true });
    expect((await answer!).body).toMatchObject({ model_version: '2' });
    expect(await stillThere(serving, mode, old)).toEqual([false]);
  });

  it('does nothing when the same version and replicas are activated again, and scales in place otherwise', async () => {
    const { serving, target } = await setupMode();
    await serving.activate(target('1'));
    const before = await servers(serving, mode);
    await serving.activate(target('1'));
    expect(await servers(serving, mode)).toEqual(before);
    await serving.activate(target('1', { replicas: 2 }));
    expect((await servers(serving, mode)).slice(0, 1)).toEqual(before);
    expect(serving.state('default', 'lin')).toMatchObject({ replicas: 2, readyReplicas: 2 });
    await serving.activate(target('1', { replicas: 1 }));
    expect(await servers(serving, mode)).toEqual(before);
  });

  it('answers 503 with zero replicas and 404 once deactivated', async () => {
    const { serving, target, url } = await setupMode();
    await serving.activate(target('1'));
    const first = await servers(serving, mode);
    await serving.activate(target('2', { replicas: 0 }));
    expect((await inferX(url, 'lin', [1])).status).toBe(503);
    expect(await stillThere(serving, mode, first)).toEqual([false]);
    // replicas 0: the model should not serve, so the node is ready without it.
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    await serving.activate(target('1'));
    await serving.deactivate('default', 'lin');
    const r = await inferX(url, 'lin', [1]);
    expect(r.status).toBe(404);
    expect(r.body.error).toMatch(/unknown model "lin"/);
    expect(serving.state('default', 'lin')).toBeUndefined();
  });

  it('switches 10 times under constant load without failing a request, each answer from a version current when it was routed', async () => {
    // stopGraceMs 0: old instances are SIGKILLed at once, so only the gateway's drain keeps
    // requests in flight on them from failing (the onnx runtime's own graceful stop does not count).
    const { serving, target, url } = await setupMode({ serving: { stopGraceMs: 0 } });
    await serving.activate(target('1'));
    const pool = new Pool(url, { connections: 8 });
    cleanups.push(() => pool.close());
    // Each activation: [called, resolved]; version k may answer from its call until the next resolves.
    const switches: Array<{ version: string; called: number; resolved: number }> = [{ version: '1', called: 0, resolved: performance.now() }];
    const results: Array<{ t0: number; t1: number; status: number; version?: string; data?: number[]; x: number }> = [];
    let stop = false;
    const MAX_REQUESTS = 50_000;
    const worker = async (w: number) => {
      for (let i = 0; !stop && results.length < MAX_REQUESTS; i++) {
        const x = w * 1000 + (i % 1000);
        const t0 = performance.now();
        try {
          const res = await pool.request({
            path: '/v2/models/lin/infer',
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [x] }] }),
          });
          const body = (await res.body.json()) as { model_version?: string; outputs?: Array<{ data: number[] }> };
          results.push({ t0, t1: performance.now(), status: res.statusCode, version: body.model_version, data: body.outputs?.[0]?.data, x });
        } catch {
          results.push({ t0, t1: performance.now(), status: 0, x });
        }
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    const deadline = Date.now() + 150_000;
    try {
      for (let k = 0; k < 10 && Date.now() < deadline; k++) {
        const version = k % 2 === 0 ? '2' : '1';
        const n = results.length;
        await waitFor(() => results.length >= n + 20, WAIT_MS, 'some requests between switches');
        const called = performance.now();
        await serving.activate(target(version));
        switches.push({ version, called, resolved: performance.now() });
      }
      const n = results.length;
      await waitFor(() => results.length >= n + 20, WAIT_MS, 'requests after the last switch');
    } finally {
      stop = true;
      await load;
    }
    expect(switches).toHaveLength(11);
    const failed = results.filter((r) => r.status !== 200);
    expect(failed).toEqual([]);
    const possible = (version: string, t0: number, t1: number) =>
      switches.some((s, k) => s.version === version && s.called <= t1 && (switches[k + 1]?.resolved ?? Infinity) >= t0);
    const wrong = results.filter((r) => !possible(r.version!, r.t0, r.t1));
    expect(wrong).toEqual([]);
    for (const r of results) {
      const { w, b } = VERSIONS[r.version!];
      expect(r.data).toEqual([Math.fround(r.x * w + b)]);
    }
    // Both versions answered, before and after switches.
    expect(new Set(results.map((r) => r.version))).toEqual(new Set(['1', '2']));
    expect(serving.state('default', 'lin')).toMatchObject({ version: '1', readyReplicas: 1 });
  });
});

describe('a version that cannot serve', () => {
  it('broken model file: StartFailed with the runtime’s reason, and the old version keeps answering', async () => {
    const { env, serving, target, url } = await setup();
    await serving.activate(target('1'));
    makeModelDir(env.paths.treeDir('default', 'lin', { version: '3' }), { broken: true });
    const err = await serving.activate(target('3')).catch((e: ModeldError) => e);
    expect(err).toMatchObject({ code: 'StartFailed' });
    expect((err as Error).message).toMatch(/Protobuf parsing failed/);
    expect(serving.state('default', 'lin')).toMatchObject({ version: '1', readyReplicas: 1 });
    expect((await inferX(url, 'lin', [1])).body).toMatchObject({ model_version: '1', outputs: [{ data: [3] }] });
  });

  it.each([
    ['never becomes ready', 'never-ready', 'NotReady', 1500],
    ['crashes after start', 'crash-after-start', 'CrashLoop', 30_000],
    ['crashes immediately', 'crash-immediately', 'CrashLoop', 30_000],
  ])('runtime that %s: %s, the old version keeps answering, nothing of the new one left running', async (_what, mode, code, startTimeoutMs) => {
    const { env, serving, target, url } = await setup({ runtimes: { fix: fixtureRuntime(mode, { startTimeoutMs }) } });
    await serving.activate(target('1'));
    const pidFile = join(env.root, 'fixture-pids');
    const t = target('2', { frameworkType: 'fix' });
    // The fixture appends its pid to a file, so the test can check nothing is left running.
    (env.config.runtimes.fix.command as string[]).push('--pid-file', pidFile);
    writeFileSync(pidFile, '');
    const err = await serving.activate(t).catch((e: ModeldError) => e);
    expect(err).toMatchObject({ code });
    expect(serving.state('default', 'lin')).toMatchObject({ version: '1', readyReplicas: 1 });
    expect((await inferX(url, 'lin', [2])).body).toMatchObject({ model_version: '1', outputs: [{ data: [5] }] });
    const started = (await import('node:fs')).readFileSync(pidFile, 'utf8').split('\n').filter(Boolean).map(Number);
    expect(started.length).toBeGreaterThan(0);
    await waitFor(() => started.every((p) => !isRunning(p)), WAIT_MS, 'fixture runtimes gone');
  });

  it('a serving version that starts crash-looping is reported to the serving-failure listener', async () => {
    const { env, serving, failures, target, url } = await setup();
    const crashFile = join(env.root, 'crash-now');
    env.config.runtimes.fix = fixtureRuntime('ready-then-crash', { env: { CRASH_FILE: crashFile } }) as never;
    await serving.activate(target('2', { frameworkType: 'fix' }));
    expect((await inferX(url, 'lin', [4])).body).toMatchObject({ model_version: '2', outputs: [{ data: [4] }] });
    writeFileSync(crashFile, '');
    await waitFor(() => failures.length > 0, WAIT_MS, 'the serving-failure listener');
    expect(failures).toEqual([{ version: '2', err: expect.objectContaining({ code: 'CrashLoop' }) }]);
    // The owner rolls back the same way it switches.
    await serving.activate(target('1'));
    expect((await inferX(url, 'lin', [4])).body).toMatchObject({ model_version: '1', outputs: [{ data: [9] }] });
  });

  it('a frameworkType with no runtime: RuntimeNotFound, nothing started', async () => {
    const { serving, target } = await setup();
    await expect(serving.activate(target('1', { frameworkType: 'tensorflow' }))).rejects.toMatchObject({ code: 'RuntimeNotFound' });
    expect(serving.served()).toEqual([]);
  });

  it('an activation cancelled by its signal stops the new instances and keeps the old', async () => {
    const { env, serving, target, url } = await setup({ runtimes: { fix: fixtureRuntime('never-ready', { startTimeoutMs: 600_000 }) } });
    await serving.activate(target('1'));
    const ac = new AbortController();
    const p = serving.activate(target('2', { frameworkType: 'fix' }), { signal: ac.signal });
    p.catch(() => {}); // awaited below
    const pid = await spawnedRuntime(env.paths, 'lin', '2');
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'Cancelled' });
    await waitFor(() => !isRunning(pid), WAIT_MS, 'the new instance to stop');
    expect((await inferX(url, 'lin', [1])).body).toMatchObject({ model_version: '1' });
  });
});
