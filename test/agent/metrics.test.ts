import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import { silentLogger } from '../../agent/log.js';
import { AgentMetrics, startMetricsServer, StatusTracker, type MetricsServer } from '../../agent/metrics/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { inferX, makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { parsePromText, sampleValue } from '../helpers/prom-text.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// /metrics: prom-client 15 has no parser of its own (it only writes the format), so the scrape
// is read by test/helpers/prom-text.ts, a strict parser of the text format 0.0.4.

const st = (over: Partial<StatusContent>): StatusContent =>
  ({ node: 'n', namespace: 'default', name: 'm', observedGeneration: 1, phase: 'Pending', replicas: 1, readyReplicas: 0, versions: [], time: '', ...over }) as StatusContent;

describe('the strict text-format parser', () => {
  it('accepts what prom-client writes and rejects malformed expositions', async () => {
    const m = new AgentMetrics({ agentVersion: '1.2.3', node: 'edge "1"\\x' });
    m.onRuntimeRestarts('default', 'lin', 1);
    const fams = parsePromText(await m.registry.metrics());
    expect(sampleValue(fams, 'modeld_info', { node: 'edge "1"\\x' })).toBe(1);
    expect(sampleValue(fams, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    const bad = [
      'x 1\n', // no TYPE
      '# TYPE x counter\nx -1\n',
      '# TYPE x gauge\nx{a="\\q"} 1\n',
      '# TYPE x gauge\nx{a="1",a="2"} 1\n',
      '# TYPE x gauge\nx one\n',
      '# TYPE x gauge\nx 1\nx 2\n',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
      '# TYPE x gauge\nx 1',
    ];
    for (const text of bad) expect(() => parsePromText(text), text).toThrow();
  });
});

describe('StatusTracker', () => {
  it('turns phase transitions into durations, digest failures, switches and rollbacks', () => {
    let t = 0;
    const tr = new StatusTracker(() => t);
    const v = (serving: string, previous?: string) => [
      { version: serving, sha256sum: `sha-of-${serving}`, state: 'serving' as const },
      ...(previous ? [{ version: previous, sha256sum: `sha-of-${previous}`, state: 'previous' as const }] : []),
    ];
    expect(tr.observe(st({ phase: 'Downloading', progress: { bytes: 0 } }))).toEqual([]);
    t = 1000;
    expect(tr.observe(st({ phase: 'Downloading', progress: { bytes: 50 } }))).toEqual([]);
    t = 3000;
    expect(tr.observe(st({ phase: 'Verifying' }))).toEqual([{ kind: 'downloaded', namespace: 'default', name: 'm', seconds: 3 }]);
    expect(tr.observe(st({ phase: 'Installing' }))).toEqual([]);
    t = 3500;
    expect(tr.observe(st({ phase: 'Starting' }))).toEqual([{ kind: 'installed', namespace: 'default', name: 'm', seconds: 0.5 }]);
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '1', versions: v('1') }))).toEqual([]);
    // A digest failure counts once, however often the Failed status is repeated.
    expect(tr.observe(st({ phase: 'Failed', reason: 'DigestMismatch' }))).toEqual([{ kind: 'digestFailure', namespace: 'default', name: 'm' }]);
    expect(tr.observe(st({ phase: 'Failed', reason: 'DigestMismatch' }))).toEqual([]);
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '2', versions: v('2', '1') }))).toEqual([
      { kind: 'switch', namespace: 'default', name: 'm', from: '1', to: '2', rollback: false },
    ]);
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '1', versions: v('1', '2') }))).toEqual([
      { kind: 'switch', namespace: 'default', name: 'm', from: '2', to: '1', rollback: true },
    ]);
    // Failed while installing: no install duration.
    tr.observe(st({ phase: 'Installing' }));
    expect(tr.observe(st({ phase: 'Failed', reason: 'UnsafeArchive' }))).toEqual([]);
    // Deleted forgets the model: a new one of the same name starts afresh.
    tr.observe(st({ phase: 'Deleted' }));
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '9', versions: v('9') }))).toEqual([]);
  });

  it('does not count the time a model waits for a node-wide slot as download or install time', () => {
    let t = 0;
    const tr = new StatusTracker(() => t);
    tr.observe(st({ phase: 'Downloading', reason: 'WaitingForSlot', message: 'waiting for a download slot (2 of 2 in use)' }));
    t = 10_000;
    tr.observe(st({ phase: 'Downloading', progress: { bytes: 0 } }));
    t = 12_000;
    expect(tr.observe(st({ phase: 'Verifying' }))).toEqual([{ kind: 'downloaded', namespace: 'default', name: 'm', seconds: 2 }]);
    tr.observe(st({ phase: 'Installing', reason: 'WaitingForSlot', message: 'waiting for an install slot (1 of 1 in use)' }));
    t = 20_000;
    tr.observe(st({ phase: 'Installing' }));
    t = 21_000;
    expect(tr.observe(st({ phase: 'Starting' }))).toEqual([{ kind: 'installed', namespace: 'default', name: 'm', seconds: 1 }]);
  });

  it('counts a version republished with other bytes as a switch, and going back to the first build as a rollback', () => {
    const tr = new StatusTracker(() => 0);
    const first = { version: '1', sha256sum: 'a'.repeat(64) };
    const retrained = { version: '1', sha256sum: 'b'.repeat(64) };
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '1', versions: [{ ...first, state: 'serving' }] }))).toEqual([]);
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '1', versions: [{ ...first, state: 'previous' }, { ...retrained, state: 'serving' }] }))).toEqual([
      { kind: 'switch', namespace: 'default', name: 'm', from: '1', to: '1', rollback: false },
    ]);
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '1', versions: [{ ...first, state: 'serving' }, { ...retrained, state: 'previous' }] }))).toEqual([
      { kind: 'switch', namespace: 'default', name: 'm', from: '1', to: '1', rollback: true },
    ]);
    // The same status again is no switch.
    expect(tr.observe(st({ phase: 'Serving', servingVersion: '1', versions: [{ ...first, state: 'serving' }, { ...retrained, state: 'previous' }] }))).toEqual([]);
  });
});

describe('/metrics server', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves the registry on an ephemeral port, 404 elsewhere, 405 for writes', async () => {
    const m = new AgentMetrics({ processMetrics: false });
    let depth = 3;
    const model = (name: string, phase: string) => ({ namespace: 'default', name, phase, replicas: 1, readyReplicas: phase === 'Serving' ? 1 : 0 });
    m.setSources({ outboxDepth: () => depth, models: () => [model('a', 'Serving'), model('b', 'Serving'), model('c', 'Failed')] });
    server = await startMetricsServer({ registry: m.registry, bind: '127.0.0.1', port: 0, log: silentLogger() });
    expect(server.port).toBeGreaterThan(0);
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    let fams = parsePromText(await res.text());
    expect(sampleValue(fams, 'modeld_outbox_depth')).toBe(3);
    expect(sampleValue(fams, 'modeld_models', { phase: 'Serving' })).toBe(2);
    expect(sampleValue(fams, 'modeld_broker_connected')).toBe(0);
    depth = 0; // read on every scrape
    fams = parsePromText(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text());
    expect(sampleValue(fams, 'modeld_outbox_depth')).toBe(0);
    expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
  });

  it('a busy port is a coded StartFailed error', async () => {
    const m = new AgentMetrics({ processMetrics: false });
    server = await startMetricsServer({ registry: m.registry, bind: '127.0.0.1', port: 0, log: silentLogger() });
    await expect(startMetricsServer({ registry: m.registry, bind: '127.0.0.1', port: server.port, log: silentLogger() })).rejects.toMatchObject({ code: 'StartFailed' });
  });
});

describe('the daemon’s /metrics', () => {
  let work: string;
  let broker: Broker;
  let cloud: Cloud;
  let agent: AgentProcess | undefined;
  const servers: ChaosServer[] = [];

  beforeEach(async () => {
    work = mkdtempSync(join(tmpdir(), 'modeld-metrics-'));
    broker = await startMosquitto();
    cloud = await connectCloud(broker.url);
  });
  afterEach(async () => {
    await agent?.end();
    agent = undefined;
    await cloud.close();
    await broker.close();
    for (const s of servers.splice(0)) await s.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('moves when a download, a request, a switch, a rollback and a digest failure happen', async () => {
    const v1 = await makeModelArchive(join(work, 'v1.tar.gz'), { w: 2, b: 1 });
    const v2 = await makeModelArchive(join(work, 'v2.tar.gz'), { w: 3, b: 0 });
    const s1 = await startChaosServer({ body: readFileSync(v1.path) });
    const s2 = await startChaosServer({ body: readFileSync(v2.path) });
    servers.push(s1, s2);
    const metricsPort = await freePort();
    const gatewayPort = await freePort();
    agent = startAgentProcess({
      node: { name: 'edge-m', address: '127.0.0.1' },
      broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
      stateDir: join(work, 'state'),
      gateway: { bind: '127.0.0.1', port: gatewayPort },
      admin: { metricsBind: '127.0.0.1', metricsPort },
      fetch: { progressIntervalMs: 50 },
      serving: { drainTimeoutMs: 2000, stopGraceMs: 2000 },
    });
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(res.status).toBe(200);
      return parsePromText(await res.text());
    };
    const m = { namespace: 'default', name: 'lin' };
    await waitFor(() => cloud.hellos.includes('edge-m'), 60_000, 'hello');
    await waitFor(async () => sampleValue(await scrape(), 'modeld_broker_connected') === 1, WAIT_MS, 'broker_connected 1');
    let fams = await scrape();
    expect(sampleValue(fams, 'modeld_download_bytes_total', m) ?? 0).toBe(0);

    const content = (generation: number, target: string, sha2 = v2.sha256): ModelContent => ({
      metadata: { name: 'lin', namespace: 'default', uid: 'u-lin', generation },
      spec: {
        modelName: 'lin',
        deployToLayer: 'edge',
        frameworkType: 'onnx',
        manifest: [
          { version: '1', downloadURL: s1.urlFor('/v1.tar.gz'), sha256sum: v1.sha256 },
          { version: '2', downloadURL: s2.urlFor('/v2.tar.gz'), sha256sum: sha2 },
        ],
        targetVersion: target,
      },
    });
    const serving = (version: string, generation: number) =>
      cloud.waitStatus((s) => s.name === 'lin' && s.phase === 'Serving' && s.servingVersion === version && s.observedGeneration === generation, { timeoutMs: 90_000, what: `serving ${version}` });

    await cloud.update('edge-m', content(1, '1'));
    await serving('1', 1);
    fams = await scrape();
    // Exactly the archive's bytes came over the network.
    expect(sampleValue(fams, 'modeld_download_bytes_total', m)).toBe(v1.size);
    expect(sampleValue(fams, 'modeld_download_duration_seconds_count')).toBe(1);
    expect(sampleValue(fams, 'modeld_install_duration_seconds_count')).toBe(1);
    expect(sampleValue(fams, 'modeld_models', { phase: 'Serving' })).toBe(1);
    expect(sampleValue(fams, 'modeld_outbox_depth')).toBeGreaterThanOrEqual(0);
    expect(sampleValue(fams, 'process_resident_memory_bytes')).toBeGreaterThan(0);

    const r = await inferX(`http://127.0.0.1:${gatewayPort}`, 'lin', [1, 2]);
    expect(r.status).toBe(200);
    await inferX(`http://127.0.0.1:${gatewayPort}`, 'nope', [1]); // unknown model: no series for it
    fams = await scrape();
    expect(sampleValue(fams, 'modeld_gateway_requests_total', { ...m, model: 'lin', code: '200' })).toBe(1);
    expect(sampleValue(fams, 'modeld_gateway_request_duration_seconds_count', { ...m, model: 'lin' })).toBe(1);
    expect(sampleValue(fams, 'modeld_gateway_requests_total', { model: 'nope' })).toBeUndefined();

    await cloud.update('edge-m', content(2, '2'));
    await serving('2', 2);
    await cloud.update('edge-m', content(3, '1'));
    await serving('1', 3);
    fams = await scrape();
    expect(sampleValue(fams, 'modeld_download_bytes_total', m)).toBe(v1.size + v2.size);
    expect(sampleValue(fams, 'modeld_switches_total', m)).toBe(2);
    expect(sampleValue(fams, 'modeld_rollbacks_total', m)).toBe(1);

    // Version 2 under a wrong digest (a new name, so the good blob in the store is not reused).
    const from = cloud.statuses.length;
    const wrong = 'f'.repeat(64);
    const bad = content(4, '2', wrong);
    bad.spec.manifest![1].version = '3';
    bad.spec.targetVersion = '3';
    await cloud.update('edge-m', bad);
    await cloud.waitStatus((s) => s.name === 'lin' && s.phase === 'Failed' && s.reason === 'DigestMismatch', { from, timeoutMs: 60_000, what: 'DigestMismatch' });
    await waitFor(async () => sampleValue(await scrape(), 'modeld_digest_failures_total', m) === 1, WAIT_MS, 'digest failure counted');
  }, 240_000);
});
