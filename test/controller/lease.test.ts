import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { LeaderElector } from '../../controller/kube/lease.js';
import { kubeRest, type KubeRest } from '../../controller/kube/rest.js';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { kubeConfigFor, startApi, until } from './harness.js';

// The elector waits on the controller's one shutdown signal for its whole life (every retryPeriod,
// about 43,000 times a day at 2 s): each wait must leave that signal as it found it.

let api: FakeKubeApi;
let rest: KubeRest;

beforeEach(async () => {
  api = await startApi();
  rest = kubeRest(kubeConfigFor(api));
});
afterEach(() => api.stop());

describe('LeaderElector', () => {
  it('renews many times on one signal without piling up abort listeners on it', async () => {
    const elector = new LeaderElector({ rest, namespace: 'kube-system', name: 'renew', identity: 'a', log: silentLogger(), retryPeriodMs: 1 });
    const stop = new AbortController();
    const puts = () => api.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/leases/renew')).length;
    const run = elector.run(stop.signal, () => {});
    await until(() => puts() >= 200, '200 renewals');
    // At most the one wait in progress listens.
    expect(getEventListeners(stop.signal, 'abort').length).toBeLessThanOrEqual(1);
    stop.abort();
    expect(await run).toBe('aborted');
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0);
  });
});
