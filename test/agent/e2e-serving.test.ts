import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { HostClient } from '../../agent/runtime/host-client.js';
import { isRunning } from '../../agent/runtime/pidfiles.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { E2E_NODE, linearContent as content, useE2e } from '../helpers/e2e-agent.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// The serving agent as a real child process: real onnxruntime behind the gateway, a broken
// version rolled back, and kill -9 followed by a restart with no broker at all.

const e2e = useE2e({ prefix: 'e2e-serving-' });

const NODE = E2E_NODE;
const runDir = () => join(e2e.stateDir, 'run');

function agent(opts: { waitHello?: boolean; isolation?: 'host' | 'process' } = {}): Promise<AgentProcess> {
  const config = e2e.config({ serving: { startTimeoutMs: 120_000, drainTimeoutMs: 2000, stopGraceMs: 2000, isolation: opts.isolation ?? 'host', probeIntervalMs: 200 } });
  return e2e.startAgent(config, [], { waitHello: opts.waitHello });
}

const model = (version: string, opts: { w: number; b: number } | { broken: true }, extra: Record<string, string> = {}) => e2e.serveModel(version, opts, extra);
const infer = (x: number) => e2e.infer('linear', x);

const runtimePids = () =>
  existsSync(runDir()) ? readdirSync(runDir()).filter((f) => f.endsWith('.pid')).map((f) => (JSON.parse(readFileSync(join(runDir(), f), 'utf8')) as { pid: number }).pid) : [];

describe('serving end to end', { timeout: 240_000 }, () => {
  it('serves v1, switches to v2, keeps v2 when v3 is broken, and reports the url', async () => {
    const v1 = await model('1', { w: 2, b: 1 });
    const v2 = await model('2', { w: 3, b: -1 });
    const v3 = await model('3', { broken: true });
    await agent();
    await e2e.cloud.update(NODE, content(1, [v1, v2, v3], '1'));
    const s1 = await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 60_000, what: 'v1 serving' });
    expect(s1.url).toBe(`http://127.0.0.1:${e2e.gatewayPort}/v2/models/linear`);
    expect(s1.readyReplicas).toBe(1);
    // A session in the runtime host: the status says which onnxruntime serves it.
    expect(s1.backend).toBe('native');
    expect(await infer(10)).toMatchObject({ status: 200, y: 21, version: '1' });

    await e2e.cloud.update(NODE, content(2, [v1, v2, v3], '2'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '2', { timeoutMs: 60_000, what: 'v2 serving' });
    expect(await infer(10)).toMatchObject({ status: 200, y: 29, version: '2' });

    await e2e.cloud.update(NODE, content(3, [v1, v2, v3], '3'));
    const failed = await e2e.cloud.waitStatus((s) => s.phase === 'Failed' && s.observedGeneration === 3, { timeoutMs: 60_000, what: 'v3 failed' });
    expect(failed.reason).toBe('StartFailed');
    expect(failed.servingVersion).toBe('2');
    expect(await infer(10)).toMatchObject({ status: 200, y: 29, version: '2' });
  });

  it('a version whose load crashes the runtime host: Failed StartFailed, the version before keeps serving, the host restarted once', async () => {
    const v1 = await model('1', { w: 2, b: 1 });
    // test/fixtures/abort-on-load.cjs, preloaded into the agent's host: this tree's load aborts it.
    const v2 = await model('2', { w: 3, b: -1 }, { ABORT_ON_LOAD: '' });
    const saved = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = `${saved ? `${saved} ` : ''}--require ${resolve(import.meta.dirname, '../fixtures/abort-on-load.cjs')}`;
    try {
      await agent();
    } finally {
      if (saved === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = saved;
    }
    await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 60_000, what: 'v1 serving' });
    const host = new HostClient({ config: { stateDir: e2e.stateDir } as never, paths: statePaths(e2e.stateDir), log: silentLogger() });
    const before = (await host.state()).pid;

    await e2e.cloud.update(NODE, content(2, [v1, v2], '2'));
    const failed = await e2e.cloud.waitStatus((s) => s.phase === 'Failed' && s.observedGeneration === 2, { timeoutMs: 120_000, what: 'v2 failed' });
    expect(failed).toMatchObject({ reason: 'StartFailed', servingVersion: '1', message: expect.stringMatching(/crashed while loading it/) });
    expect(await infer(10)).toMatchObject({ status: 200, y: 21, version: '1' });
    const after = await host.state();
    expect(after.pid).not.toBe(before);
    expect(after.diedLoading?.map((d) => [d.name, d.version])).toEqual([['linear', '2']]);
  });

  it('isolation: process — after kill -9 and a restart with the broker down, serves from local state with no orphan runtimes', async () => {
    const v1 = await model('1', { w: 2, b: 1 });
    let a = await agent({ isolation: 'process' });
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    const serving = await e2e.cloud.waitStatus((s) => s.phase === 'Serving', { timeoutMs: 60_000, what: 'v1 serving' });
    expect(serving.backend).toBeUndefined(); // a process of its own: the host does not hold it
    const before = runtimePids();
    expect(before).toHaveLength(1);
    expect(isRunning(before[0])).toBe(true);

    await a.kill('SIGKILL');
    await e2e.broker.stop();
    a = await agent({ waitHello: false, isolation: 'process' });
    // The runtime host proxies to the old instance until the new agent reaps it and starts its own.
    await waitFor(() => !isRunning(before[0]), WAIT_MS, 'the orphan runtime to be reaped');
    await waitFor(() => runtimePids().some((p) => p !== before[0] && isRunning(p)), 60_000, 'a new instance');
    await waitFor(async () => (await infer(5)).y === 11, 60_000, 'v1 serving again without a broker');
    const after = runtimePids();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before[0]);
    await e2e.broker.start();
  });

  it('SIGKILL of the agent’s whole process group under load drops no request; a new agent takes the running host over', async () => {
    const v1 = await model('1', { w: 2, b: 1 });
    let a = await agent();
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 60_000, what: 'v1 serving' });
    const host = new HostClient({ config: { stateDir: e2e.stateDir } as never, paths: statePaths(e2e.stateDir), log: silentLogger() });
    const before = await host.state();
    expect(before.routes.map((r) => [r.name, r.kind])).toEqual([['linear', 'session']]);

    const results: Array<{ status: number; y?: number }> = [];
    let stop = false;
    const load = Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; !stop; i++) results.push({ ...(await infer(w * 1000 + i)), x: w * 1000 + i } as never);
      }),
    );
    try {
      await waitFor(() => results.length > 50, WAIT_MS, 'requests before the kill');
      // The agent's whole process group, as `systemctl restart` with KillMode=mixed ends its cgroup.
      process.kill(-a.child.pid!, 'SIGKILL');
      await a.exited;
      const n = results.length;
      await waitFor(() => results.length > n + 50, WAIT_MS, 'requests while no agent runs');
      a = await agent();
      await e2e.cloud.update(NODE, content(1, [v1], '1'));
      await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1' && s.readyReplicas === 1, { timeoutMs: 60_000, what: 'v1 serving for the new agent' });
      const m = results.length;
      await waitFor(() => results.length > m + 50, WAIT_MS, 'requests after the new agent took over');
    } finally {
      stop = true;
      await load;
    }
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    expect(results.every((r) => r.y === 2 * (r as unknown as { x: number }).x + 1)).toBe(true);
    // The same host and the same session: nothing was reloaded.
    const after = await host.state();
    expect(after.pid).toBe(before.pid);
    expect(after.routes[0].sessions).toEqual(before.routes[0].sessions);
  });
});
