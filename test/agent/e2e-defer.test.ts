import { request } from 'node:http';
import { beforeEach, describe, expect, it } from 'vitest';
import type { StatusContent } from '../../shared/index.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { E2E_NODE, linearContent as content, useE2e, type AgentConfig } from '../helpers/e2e-agent.js';
import { runCli, writeConfig } from '../helpers/modeld-cli.js';
import { waitForValue } from '../helpers/wait.js';

// `modeld defer` end to end: a real agent serving real onnxruntime, real archives over HTTP, a real
// broker. A hold keeps v1 serving while v2 is fetched and installed; the switch happens at
// release, at the deadline, and the hold outlives a daemon restart.

const e2e = useE2e({ prefix: 'e2e-defer-' });
let config: AgentConfig;
let configFile: string;

const NODE = E2E_NODE;

async function agent(): Promise<AgentProcess> {
  return e2e.startAgent(config);
}

const model = (version: string, opts: { w: number; b: number }) => e2e.serveModel(version, opts);

/** y of the linear model that serves: 21 for v1 (2x+1), 29 for v2 (3x-1) at x = 10. */
async function infer(): Promise<number | undefined> {
  const r = await e2e.infer('linear', 10);
  return r.status === 200 ? r.y : undefined;
}

/** One request on the admin socket, as a local application makes it (curl --unix-socket). */
function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const text = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: (config.admin as { socket: string }).socket, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      let data = '';
      res.on('data', (c: Buffer) => (data += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(data || '{}') }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

const cli = (...args: string[]) => runCli(configFile, args);
const localStatus = async () => JSON.parse((await cli('status', 'linear', '-o', 'json')).stdout || '{}') as { daemon?: boolean; models?: Array<Record<string, any>> };

/** v1 serving, a hold placed, v2 published: resolves with the Deferred status. */
async function deferredV2(forArg = '1h'): Promise<StatusContent> {
  const v1 = await model('1', { w: 2, b: 1 });
  const v2 = await model('2', { w: 3, b: -1 });
  await agent();
  await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
  await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 90_000, what: 'v1 serving' });
  expect(await infer()).toBe(21);
  const d = await cli('defer', 'linear', '--for', forArg);
  expect(d, d.stderr).toMatchObject({ code: 0 });
  await e2e.cloud.update(NODE, content(2, [v1, v2], '2'));
  return e2e.cloud.waitStatus((s) => s.phase === 'Deferred' && s.observedGeneration === 2, { timeoutMs: 90_000, what: 'v2 deferred' });
}

beforeEach(() => {
  config = e2e.config({
    serving: { startTimeoutMs: 120_000, drainTimeoutMs: 2000, stopGraceMs: 2000, probeIntervalMs: 200 },
    deferral: { maxSeconds: 3600 },
  });
  configFile = writeConfig(config);
});

describe('update deferral on the node', { timeout: 300_000 }, () => {
  it('fetches and installs v2 but keeps v1 serving while held, and switches at release', async () => {
    const deferred = await deferredV2();
    expect(deferred).toMatchObject({ reason: 'UpdateDeferred', targetVersion: '2', servingVersion: '1' });
    expect(Date.parse(deferred.deferredUntil!)).toBeGreaterThan(Date.parse(deferred.time));
    expect(deferred.message).toContain('deferred by a local hold until');
    // Downloaded, verified and unpacked: v2's tree is installed beside the serving v1.
    expect(deferred.versions).toEqual(expect.arrayContaining([expect.objectContaining({ version: '2', sha256sum: expect.any(String), state: 'installed' }), expect.objectContaining({ version: '1', state: 'serving' })]));
    expect(await infer()).toBe(21);
    const table = await cli('status');
    expect(table.stdout).toMatch(/default\/linear +\S+ +Deferred +1 +2 /);
    expect(table.stdout).toContain(`default/linear deferred until ${deferred.deferredUntil}`);
    expect((await cli('describe', 'linear')).stdout).toContain(`Deferral:     deferred until ${deferred.deferredUntil}`);

    const from = e2e.cloud.statuses.length;
    const r = await cli('defer', '--release', 'linear');
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(r.stdout).toContain('hold released');
    const switched = await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '2', { from, timeoutMs: 90_000, what: 'v2 serving after release' });
    expect(switched.deferredUntil).toBeUndefined();
    expect(await infer()).toBe(29);
  });

  it('switches at the hold deadline (a shorter --for re-arms it)', async () => {
    await deferredV2();
    const from = e2e.cloud.statuses.length;
    const short = await cli('defer', 'linear', '--for', '2s', '-o', 'json');
    expect(short, short.stderr).toMatchObject({ code: 0 });
    const until = Date.parse(JSON.parse(short.stdout).deferredUntil);
    const switched = await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '2', { from, timeoutMs: 90_000, what: 'v2 serving at the deadline' });
    // Not before the deadline: the switch came from the timer.
    expect(Date.parse(switched.time)).toBeGreaterThanOrEqual(until);
    expect(await infer()).toBe(29);
    const events = await cli('events', 'linear');
    expect(events.stdout).toContain('DeferralExpired');
  });

  it('keeps the hold across a daemon restart: v1 serves again, v2 waits', async () => {
    const deferred = await deferredV2();
    await e2e.agents.at(-1)!.kill('SIGTERM');
    await agent();
    const m = await waitForValue(async () => {
      const r = await localStatus();
      const s = r.models?.[0];
      return r.daemon && s?.servingVersion === '1' && s.readyReplicas === 1 ? s : undefined;
    }, 90_000, 'v1 serving again after the restart');
    expect(m).toMatchObject({ phase: 'Deferred', deferredUntil: deferred.deferredUntil, targetVersion: '2' });
    expect(await infer()).toBe(21);
    const from = e2e.cloud.statuses.length;
    expect((await cli('defer', '--release', 'linear')).code).toBe(0);
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '2', { from, timeoutMs: 90_000, what: 'v2 serving after release' });
    expect(await infer()).toBe(29);
  });

  it('refuses bad input with a coded exit: unknown model, malformed or past times, over the cap, release without a hold', async () => {
    const v1 = await model('1', { w: 2, b: 1 });
    await agent();
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 90_000, what: 'v1 serving' });
    const cases: Array<[string[], number, RegExp]> = [
      [['defer', 'nope', '--for', '1m'], 4, /^modeld: NotFound: no model default\/nope/],
      [['defer', 'linear', '--for', 'soon'], 2, /^modeld: BadRequest: --for "soon" is not a duration/],
      [['defer', 'linear', '--until', 'tomorrow'], 2, /^modeld: BadRequest: --until "tomorrow" is not an RFC 3339 time/],
      [['defer', 'linear', '--until', '2001-01-01T00:00:00Z'], 2, /^modeld: BadRequest: --until 2001-01-01T00:00:00Z is not in the future/],
      [['defer', 'linear', '--for', '2h'], 2, /^modeld: DeferralTooLong: a hold may last at most 3600 s \(deferral.maxSeconds\)/],
      [['defer', 'linear', '--for', '1m', '--until', '2099-01-01T00:00:00Z'], 2, /^modeld: BadRequest: --until and --for do not go together/],
      [['defer', '--release', 'linear'], 1, /^modeld: NotHeld: default\/linear is not deferred/],
    ];
    for (const [args, code, err] of cases) {
      const r = await cli(...args);
      expect({ args, code: r.code, stderr: r.stderr }).toMatchObject({ args, code, stderr: expect.stringMatching(err) });
    }
    // The admin API itself, as a local application calls it.
    expect(await admin('POST', '/v1/defer', { name: 'linear', for: '2h' })).toMatchObject({ status: 400, body: { reason: 'DeferralTooLong' } });
    expect(await admin('POST', '/v1/defer', { name: 'linear', until: 'noon' })).toMatchObject({ status: 400, body: { reason: 'BadRequest' } });
    expect(await admin('POST', '/v1/defer', { name: 'nope' })).toMatchObject({ status: 404, body: { reason: 'NotFound' } });
    expect(await admin('POST', '/v1/defer', { name: 'linear', release: true })).toMatchObject({ status: 409, body: { reason: 'NotHeld' } });
    const r = await cli('status', '-o', 'json');
    expect(JSON.parse(r.stdout).models[0].deferredUntil).toBeUndefined();
    const viaApi = await admin('POST', '/v1/defer', { namespace: 'default', name: 'linear', for: '10m' });
    expect(viaApi).toMatchObject({ status: 200, body: { model: 'default/linear', maxSeconds: 3600, servingVersion: '1', targetVersion: '1' } });
    expect((await admin('GET', '/v1/status?model=default/linear')).body.models[0].deferredUntil).toBe(viaApi.body.deferredUntil);
    // Asked again, the hold's start stays: the cap counts from the first request.
    // Within the cap: accepted; the deadline is at most maxSeconds away.
    const ok = await cli('defer', 'linear', '-o', 'json');
    expect(ok, ok.stderr).toMatchObject({ code: 0 });
    const body = JSON.parse(ok.stdout);
    expect(body.deferredSince).toBe(viaApi.body.deferredSince);
    expect(Date.parse(body.deferredUntil) - Date.parse(body.deferredSince)).toBe(3600 * 1000);
    // Nothing pending: the model stays Serving, the hold is shown.
    expect((await localStatus()).models?.[0]).toMatchObject({ phase: 'Serving', deferredUntil: body.deferredUntil });
  });
});
