import { describe, expect, it } from 'vitest';
import { ModeldError } from '../../agent/errors.js';
import { silentLogger } from '../../agent/log.js';
import { NodeLimits } from '../../agent/reconcile/node-limits.js';
import type { StatusUpdate } from '../../agent/reconcile/report.js';
import type { ServeTarget, ServingPort } from '../../agent/reconcile/serving-port.js';
import { startVersion, type StartDeps } from '../../agent/reconcile/start-version.js';

// The start step: a version gets serving.startAttempts tries to become ready (NotReady is what a
// slow start on a busy board looks like), with backoff between them, each under a node-wide
// start slot; then it is Failed NotReady. Other failures are not retried.

const tick = () => new Promise<void>((r) => setImmediate(r));

const notReady = (v = '2') => new ModeldError('NotReady', `version ${v}: 1 of 1 instances not ready within 4000 ms`);

const target = (name = 'm', version = '2'): ServeTarget => ({ namespace: 'default', name, modelName: name, version, versionDir: `/x/${name}/${version}`, replicas: 1 });

/** A serving layer whose activations end as scripted: 'ready', an error, or a gate to wait on. */
function fakeServing(script: Array<'ready' | Error | Promise<void>>) {
  const calls: Array<{ version: string; name: string }> = [];
  const serving: ServingPort = {
    async activate(t, opts) {
      calls.push({ version: t.version, name: t.name });
      const next = script.shift() ?? 'ready';
      if (next instanceof Error) throw next;
      if (next !== 'ready') await next;
      opts?.onRouted?.();
      return { url: 'http://x' };
    },
    async deactivate() {},
    state: () => undefined,
  };
  return { serving, calls };
}

function deps(serving: ServingPort, over: Partial<StartDeps> = {}) {
  const reports: Array<{ name: string } & StatusUpdate> = [];
  const sleeps: number[] = [];
  const d: StartDeps = {
    serving,
    limits: new NodeLimits({ fetches: 2, installs: 1, starts: 1 }),
    reporter: { report: (_ns: string, name: string, u: StatusUpdate) => reports.push({ name, ...u }) },
    config: { serving: { startAttempts: 3, startBackoffMs: 1000 } },
    log: silentLogger(),
    sleep: async (ms) => void sleeps.push(ms),
    ...over,
  };
  return { d, reports, sleeps };
}

describe('startVersion', () => {
  it('a version not ready on its first two tries is tried again, with growing waits, and serves on the third', async () => {
    const { serving, calls } = fakeServing([notReady(), notReady(), 'ready']);
    const { d, reports, sleeps } = deps(serving);
    await startVersion(target(), d, new AbortController().signal);
    expect(calls).toHaveLength(3);
    expect(sleeps).toHaveLength(2);
    expect(sleeps[0]).toBeLessThanOrEqual(1000);
    expect(sleeps[1]).toBeLessThanOrEqual(2000);
    const messages = reports.map((r) => `${r.phase} ${r.reason ?? '-'} ${r.message ?? ''}`);
    expect(messages[0]).toBe('Starting - ');
    expect(messages).toContainEqual(expect.stringMatching(/^Starting NotReady version 2 not ready on try 1 of 3: .*within 4000 ms; trying again in \d+(\.\d)? s$/));
    expect(messages).toContainEqual(expect.stringMatching(/^Starting - version 2: try 2 of 3$/));
    expect(messages).toContainEqual(expect.stringMatching(/^Starting NotReady version 2 not ready on try 2 of 3: /));
    expect(messages).toContainEqual(expect.stringMatching(/^Starting - version 2: try 3 of 3$/));
    expect(reports.every((r) => r.phase === 'Starting' && r.targetVersion === '2')).toBe(true);
  });

  it('a version never ready fails NotReady after serving.startAttempts tries, saying so', async () => {
    const { serving, calls } = fakeServing([notReady(), notReady(), notReady(), 'ready']);
    const { d, sleeps } = deps(serving);
    const err = await startVersion(target(), d, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModeldError);
    expect((err as ModeldError).code).toBe('NotReady');
    expect((err as ModeldError).retryable).toBe(false);
    expect((err as ModeldError).message).toMatch(/^not ready on 3 tries: version 2: 1 of 1 instances not ready within 4000 ms$/);
    expect((err as ModeldError).details).toMatchObject({ tries: 3 });
    expect(calls).toHaveLength(3);
    expect(sleeps).toHaveLength(2);
  });

  it('startAttempts 1 is the old behaviour: one try, its own error', async () => {
    const { serving, calls } = fakeServing([notReady()]);
    const { d } = deps(serving, { config: { serving: { startAttempts: 1, startBackoffMs: 1000 } } });
    await expect(startVersion(target(), d, new AbortController().signal)).rejects.toMatchObject({ code: 'NotReady', message: notReady().message });
    expect(calls).toHaveLength(1);
  });

  it('does not retry a version that failed otherwise (StartFailed, CrashLoop, RuntimeNotFound)', async () => {
    for (const code of ['StartFailed', 'CrashLoop', 'RuntimeNotFound'] as const) {
      const { serving, calls } = fakeServing([new ModeldError(code, 'no'), 'ready']);
      const { d, sleeps } = deps(serving);
      await expect(startVersion(target(), d, new AbortController().signal)).rejects.toMatchObject({ code, message: 'no' });
      expect(calls).toHaveLength(1);
      expect(sleeps).toEqual([]);
    }
  });

  it('a newer spec during the wait between tries cancels it: Cancelled, no further try', async () => {
    const { serving, calls } = fakeServing([notReady(), 'ready']);
    const ac = new AbortController();
    const { d } = deps(serving, {
      sleep: async () => {
        ac.abort(new Error('superseded'));
      },
    });
    await expect(startVersion(target(), d, ac.signal)).rejects.toMatchObject({ code: 'Cancelled' });
    expect(calls).toHaveLength(1);
  });

  it('holds a node-wide start slot while a version starts, says so to the model kept waiting, and frees it once routed and between tries', async () => {
    const gate = { open: () => {} };
    const slowStart = new Promise<void>((r) => (gate.open = r));
    // Model a: first try not ready, second ready. Model b: waits for a's slot, not for a's retries.
    const { serving, calls } = fakeServing([slowStart, 'ready']);
    const limits = new NodeLimits({ fetches: 2, installs: 1, starts: 1 });
    const { d: da, reports } = deps(serving, { limits });
    const { d: db, reports: reportsB } = deps(serving, { limits });
    const a = startVersion(target('a'), da, new AbortController().signal);
    await tick();
    const b = startVersion(target('b'), db, new AbortController().signal);
    await tick();
    expect(calls.map((c) => c.name)).toEqual(['a']);
    expect(reportsB.map((r) => [r.phase, r.reason, r.message])).toEqual([['Starting', 'WaitingForSlot', 'waiting for a runtime start slot (1 of 1 in use)']]);
    gate.open();
    await Promise.all([a, b]);
    expect(calls.map((c) => c.name)).toEqual(['a', 'b']);
    expect(reportsB.at(-1)).toMatchObject({ phase: 'Starting', message: undefined });
    expect(reports.every((r) => r.name === 'a')).toBe(true);
    expect(limits.inUse('start')).toBe(0);
  });

  it('lets another model start while a version waits between its tries', async () => {
    const { serving, calls } = fakeServing([notReady('2'), 'ready', 'ready']);
    const limits = new NodeLimits({ fetches: 2, installs: 1, starts: 1 });
    let wake!: () => void;
    const { d: da } = deps(serving, { limits, sleep: () => new Promise<void>((r) => (wake = r)) });
    const { d: db } = deps(serving, { limits });
    const a = startVersion(target('a'), da, new AbortController().signal);
    await tick();
    await tick();
    expect(limits.inUse('start')).toBe(0); // a is backing off, holding nothing
    await startVersion(target('b'), db, new AbortController().signal);
    wake();
    await a;
    expect(calls.map((c) => c.name)).toEqual(['a', 'b', 'a']);
  });
});
