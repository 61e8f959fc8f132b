import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { E2E_NODE, useE2e } from '../helpers/e2e-agent.js';
import { FIXTURE_RUNTIME } from '../helpers/models.js';

// A version that is slow to become ready (a busy board) gets more tries, with backoff, before it
// is blocked as Failed NotReady under its spec; the old version serves all along. The agent is a
// real child process running the fixture runtime (test/fixtures/oip-runtime.mjs), whose behaviour
// each version's archive sets (its `runtime-mode` file).

const e2e = useE2e({ prefix: 'e2e-start-retry-' });

const NODE = E2E_NODE;
const START_TIMEOUT_MS = 4000;

function agent(): Promise<AgentProcess> {
  const markers = join(e2e.work, 'markers');
  mkdirSync(markers, { recursive: true });
  const config = e2e.config({
    serving: { startTimeoutMs: START_TIMEOUT_MS, drainTimeoutMs: 1000, stopGraceMs: 1000, restartBackoffMs: 50, startAttempts: 3, startBackoffMs: 200 },
    runtimes: {
      fixture: {
        command: [process.execPath, FIXTURE_RUNTIME, '--port', '{port}', '--model-name', '{modelName}', '--version', '{version}', '--model-dir', '{modelDir}', '--marker-dir', markers],
        readyPath: '/v2/health/ready',
      },
    },
    admin: { metricsPort: 0 },
  });
  return e2e.startAgent(config);
}

/** A version whose runtime behaves as `mode` says (see the fixture runtime's modes). */
async function version(v: string, mode: string) {
  const src = join(e2e.work, `src-${v}`);
  await makeTree(src, { 'runtime-mode': mode });
  const body = readFileSync(await packDir(src, join(e2e.work, `v${v}.tar.gz`), { gzip: true }));
  const server = await e2e.serveBody(body);
  return { version: v, downloadURL: server.urlFor(`/v${v}.tar.gz`), sha256sum: createHash('sha256').update(body).digest('hex') };
}

const content = (generation: number, manifest: Array<{ version: string; downloadURL: string; sha256sum: string }>, targetVersion: string): ModelContent => ({
  metadata: { name: 'slow', namespace: 'default', uid: 'u-slow', generation },
  spec: { modelName: 'slow', deployToLayer: 'edge', frameworkType: 'fixture', manifest, targetVersion },
});

const infer = () => e2e.infer('slow', 1, { shape: [1] });

const summary = (ss: StatusContent[]) => ss.map((s) => `${s.phase}${s.reason ? `/${s.reason}` : ''}${s.message ? ` "${s.message}"` : ''}`).join('\n  ');

describe('NotReady is retried with backoff', { timeout: 240_000 }, () => {
  it('a runtime ready only on its second start ends Serving after a retry, not Failed NotReady', async () => {
    const v1 = await version('1', 'ready-on-second-start');
    await agent();
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    const end = await e2e.cloud.waitStatus((s) => (s.phase === 'Serving' && s.servingVersion === '1') || s.phase === 'Failed', { timeoutMs: 120_000, what: 'v1 serving or failed' });
    const gen1 = e2e.cloud.statuses.filter((s) => s.observedGeneration === 1);
    expect(end.phase, summary(gen1)).toBe('Serving');
    // The statuses said the first try was not ready and which try came next.
    expect(gen1.some((s) => s.phase === 'Starting' && s.reason === 'NotReady' && /try 1 of 3/.test(s.message ?? '')), summary(gen1)).toBe(true);
    expect(gen1.some((s) => s.phase === 'Starting' && /try 2 of 3/.test(s.message ?? '')), summary(gen1)).toBe(true);
    expect(await infer()).toMatchObject({ status: 200, version: '1' });
  });

  it('a version never ready ends Failed NotReady after serving.startAttempts tries, the old version serving all along', async () => {
    const v1 = await version('1', 'ok');
    const v2 = await version('2', 'never-ready');
    const a = await agent();
    await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 60_000, what: 'v1 serving' });

    const from = e2e.cloud.statuses.length;
    await e2e.cloud.update(NODE, content(2, [v1, v2], '2'));
    // While v2 is tried, v1 answers.
    let served = 0;
    let notV1 = 0;
    const failed = e2e.cloud.waitStatus((s) => s.phase === 'Failed' && s.observedGeneration === 2, { timeoutMs: 120_000, from, what: 'v2 failed' });
    let done = false;
    void failed.finally(() => (done = true)).catch(() => {});
    while (!done) {
      const r = await infer();
      if (r.status === 200 && r.version === '1') served++;
      else notV1++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const f = await failed;
    const gen2 = e2e.cloud.statuses.slice(from).filter((s) => s.observedGeneration === 2);
    expect(f.reason, summary(gen2)).toBe('NotReady');
    expect(f.message).toMatch(/3 tries/);
    expect(f.servingVersion).toBe('1');
    expect(served).toBeGreaterThan(0);
    expect(notV1).toBe(0);
    for (const n of [1, 2]) expect(gen2.some((s) => s.phase === 'Starting' && new RegExp(`try ${n} of 3`).test(s.message ?? '')), summary(gen2)).toBe(true);
    expect(gen2.some((s) => s.phase === 'Starting' && /try 3 of 3/.test(s.message ?? '')), summary(gen2)).toBe(true);
    // Three runtime processes for v2, each given its full start timeout.
    const spawned = a.logs.filter((l) => /^fixture runtime slow@2 mode never-ready/.test(String(l.msg)));
    expect(spawned.length).toBe(3);
    // Blocked under this spec: not tried again, v1 goes on serving.
    expect(await infer()).toMatchObject({ status: 200, version: '1' });
  });
});
