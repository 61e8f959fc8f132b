import { mkdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { AgentMetrics } from '../../agent/metrics/index.js';
import { Serving, type ServeTarget } from '../../agent/runtime/serving.js';
import { fixtureRuntime, inferX, servingEnv } from '../helpers/models.js';
import { parsePromText, sampleValue } from '../helpers/prom-text.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// Serving's metrics hooks with real runtime processes: restarts counted (also several in a row
// before the instance becomes ready again), gateway requests per model and status code.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(mode: string, serving: Record<string, number> = {}) {
  const env = servingEnv({ runtimes: { fix: fixtureRuntime(mode) } as never, serving });
  const metrics = new AgentMetrics({ processMetrics: false });
  const s = new Serving({
    config: env.config,
    paths: env.paths,
    log: silentLogger(),
    onRuntimeRestarts: (ns, name, _v, n) => metrics.onRuntimeRestarts(ns, name, n),
  });
  cleanups.push(() => env.cleanup());
  cleanups.push(async () => {
    await s.close();
    await s.stopHost();
  });
  await s.start();
  metrics.setSources({ extraText: () => s.hostMetrics() });
  const target: ServeTarget = { namespace: 'default', name: 'fx', modelName: 'fx', version: '1', versionDir: env.paths.treeDir('default', 'fx', { version: '1' }), frameworkType: 'fix', replicas: 1 };
  mkdirSync(target.versionDir, { recursive: true });
  const value = async (name: string, labels: Record<string, string>) => sampleValue(parsePromText(await metrics.text()), name, labels);
  return { s, target, value };
}

describe('serving metrics', () => {
  it('counts each restart of a runtime killed from outside', async () => {
    const { s, target, value } = await setup('ok');
    await s.activate(target);
    const instances = () => (s as any).models.get('default/fx').group.instances as Array<{ pid: number; state: string }>;
    for (let i = 1; i <= 2; i++) {
      const pid = instances()[0].pid;
      process.kill(pid, 'SIGKILL');
      await waitFor(() => instances()[0].state === 'ready' && instances()[0].pid !== pid, WAIT_MS, `restart ${i}`);
      expect(await value('modeld_runtime_restarts_total', { namespace: 'default', name: 'fx' })).toBe(i);
    }
  });

  it('counts restarts in a row that never reach ready (crash loop)', async () => {
    const { s, target, value } = await setup('crash-immediately', { crashLoopRestarts: 3 });
    await expect(s.activate(target)).rejects.toMatchObject({ code: 'CrashLoop' });
    expect(await value('modeld_runtime_restarts_total', { namespace: 'default', name: 'fx' })).toBe(4);
  });

  it('counts node endpoint requests per model and status, labelled namespace, name, model (the host\'s series in the agent\'s text)', async () => {
    const { s, target, value } = await setup('ok');
    await s.activate(target);
    for (let i = 0; i < 3; i++) expect((await inferX(s.gatewayUrl(), 'fx', [i])).status).toBe(200);
    expect(await value('modeld_gateway_requests_total', { namespace: 'default', name: 'fx', model: 'fx', code: '200' })).toBe(3);
    expect(await value('modeld_gateway_request_duration_seconds_count', { namespace: 'default', name: 'fx', model: 'fx' })).toBe(3);
  });
});
