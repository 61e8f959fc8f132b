import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { TYPES, model, node, startApi, startController, until } from './harness.js';

// A permanent 403 on the owned Deployment is retried with a per-key exponential backoff: each
// wait at least doubles. (Before the work queue, every reconcile pass reset the delay to 500 ms
// first, so a 403 was POSTed about twice a second for as long as it lasted.) Only lower bounds
// on the gaps are checked: a slow machine makes them longer, never shorter.

let api: FakeKubeApi;
let broker: Broker;
const stops: Array<() => Promise<void>> = [];

beforeEach(async () => {
  api = await startApi();
  broker = await startMosquitto();
});
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
  await broker.close();
  await api.stop();
});

describe('image retries', () => {
  it('backs off exponentially against a permanent 403, while other work goes on', async () => {
    api.create(TYPES.nodes, node('n1'));
    api.failNext({ method: 'POST', path: /\/deployments$/, status: 403, times: 10_000 });
    const { controller } = await startController(api, { brokerUrl: broker.url, options: { retryBaseMs: 200, retryMaxMs: 60_000 } });
    stops.push(() => controller.stop());
    api.create(TYPES.inferencemodels, model('img', { image: 'example.com/model:1', manifest: undefined, targetVersion: undefined }));
    const posts = () => api.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/deployments'));
    // Other resources keep the controller's passes busy meanwhile (each pass used to reset the delay).
    let i = 0;
    await until(() => {
      if (posts().length < 5) api.create(TYPES.inferencemodels, model(`busy-${i++}`));
      return posts().length >= 5;
    }, 'five attempts', 60_000);
    const at = posts().map((r) => r.at);
    const gaps = at.slice(1).map((t, k) => t - at[k]);
    // 200, 400, 800, 1600 ms at least (the bucket limiter can only add to them).
    expect(gaps[2]).toBeGreaterThanOrEqual(750);
    expect(gaps[3]).toBeGreaterThanOrEqual(1550);
    expect(gaps[3]).toBeGreaterThan(gaps[1]);
  });

  it('a pass while the first attempt is in flight does not queue a second attempt of the same spec (it would skip the backoff)', async () => {
    api.create(TYPES.nodes, node('n1'));
    let release!: () => void;
    api.failNext({ method: 'POST', path: /\/deployments$/, status: 403, hold: new Promise<void>((r) => (release = r)) });
    api.failNext({ method: 'POST', path: /\/deployments$/, status: 403, times: 10 });
    const { controller, metrics } = await startController(api, { brokerUrl: broker.url, options: { retryBaseMs: 600_000, retryMaxMs: 600_000 } });
    stops.push(() => controller.stop());
    const posts = () => api.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/deployments'));
    const imageRetries = async () => (await metrics.retries.get()).values.find((v) => v.labels.job === 'image')?.value ?? 0;
    api.create(TYPES.inferencemodels, model('img', { image: 'example.com/model:1', manifest: undefined, targetVersion: undefined }));
    await until(() => posts().length === 1, 'the first attempt in flight');
    // Passes while it is held: each would queue the key again.
    api.create(TYPES.inferencemodels, model('busy-1'));
    await until(() => api.get(TYPES.inferencemodels, 'default', 'busy-1')?.status?.phase, 'a pass over busy-1');
    release();
    await until(async () => (await imageRetries()) >= 1, 'the failed attempt handed back to the queue');
    // Later passes have run (busy-2's status is written after the failure was handled).
    api.create(TYPES.inferencemodels, model('busy-2'));
    await until(() => api.get(TYPES.inferencemodels, 'default', 'busy-2')?.status?.phase, 'a pass over busy-2');
    expect(posts()).toHaveLength(1);
  });
});
