import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { freePort } from '../helpers/ports.js';
import { parsePromText, sampleValue } from '../helpers/prom-text.js';
import { waitFor } from '../helpers/wait.js';

// The crash policy, on the real daemon: what escapes every handler (a throw from a timer, an
// 'error' event nobody listens to, a promise nobody awaited — injected by a preloaded module on
// SIGUSR2) is logged with its stack, counted in /metrics and recorded; the daemon keeps running,
// and its next start reports what escaped in the run before.

const INJECT = resolve(import.meta.dirname, '../fixtures/escape-on-signal.mjs');
let work: string;
let agent: AgentProcess | undefined;

beforeEach(() => (work = mkdtempSync(join(tmpdir(), 'crash-policy-'))));
afterEach(async () => {
  await agent?.end();
  agent = undefined;
  rmSync(work, { recursive: true, force: true });
});

async function start(metricsPort: number): Promise<AgentProcess> {
  const a = startAgentProcess(
    // No broker answers here: the daemon runs offline, as on a node whose broker is down.
    { node: { name: 'edge-c' }, broker: { url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir: join(work, 'state'), admin: { metricsBind: '127.0.0.1', metricsPort } },
    ['--no-serve'],
    { nodeArgs: ['--import', INJECT] },
  );
  await waitFor(() => a.logs.some((l) => l.msg === 'modeld started') || a.child.exitCode !== null, 60_000, 'the agent to start');
  expect(a.child.exitCode).toBeNull();
  return a;
}

const escapedLogs = (a: AgentProcess) => a.logs.filter((l) => l.level === 'error' && String(l.err ?? '').includes('injected: '));

describe('crash policy', { timeout: 120_000 }, () => {
  it('an error that escapes every handler is logged with its stack and counted; the daemon keeps running and its next start reports it', async () => {
    const metricsPort = await freePort();
    agent = await start(metricsPort);
    agent.child.kill('SIGUSR2');
    await waitFor(() => escapedLogs(agent!).length === 3 || agent!.child.exitCode !== null, 30_000, 'three escaped errors logged');
    expect(agent.child.exitCode, agent.stderr()).toBeNull();
    const logged = escapedLogs(agent);
    expect(logged.map((l) => String(l.err).split('\n')[0]).sort()).toEqual([
      'Error: injected: error event with no listener',
      'Error: injected: rejection nobody awaited',
      'Error: injected: thrown from a timer',
    ]);
    for (const l of logged) expect(String(l.err)).toMatch(/\n\s+at /); // the stack, not just the message

    const fams = parsePromText(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    expect(sampleValue(fams, 'modeld_escaped_errors_total', { origin: 'uncaughtException' })).toBe(2);
    expect(sampleValue(fams, 'modeld_escaped_errors_total', { origin: 'unhandledRejection' })).toBe(1);

    // Still a working daemon: a clean stop, then a start that says what escaped last time.
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    agent = await start(metricsPort);
    const report = agent.logs.find((l) => l.msg === 'errors escaped in the previous run');
    expect(report).toMatchObject({ level: 'warn', count: 3 });
    expect(String(report!.last)).toContain('injected: ');
    // Once reported, a later start has nothing to say.
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    agent = await start(metricsPort);
    expect(agent.logs.find((l) => l.msg === 'errors escaped in the previous run')).toBeUndefined();
  });
});
