// From a spec with a new targetVersion arriving over MQTT to that version serving, with its
// archive already in the store: the whole agent path (intake, plan, install, blue/green switch,
// status), with the runtime's own start time measured apart by the serving layer.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { parseConfig } from '../../agent/config/load.js';
import { silentLogger } from '../../agent/log.js';
import { startAgent } from '../../agent/main.js';
import { makeEnvelope, resourcePath, specTopic, type StatusContent } from '../../shared/index.js';
import { makeModels } from '../make-models.js';
import { median, round } from './stats.js';

const listen = (srv: { listen: (port: number, host: string, cb: () => void) => void; address: () => unknown }) =>
  new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as AddressInfo).port)));

export async function benchSpecToServing(opts: { switches: number; log: (s: string) => void }): Promise<Record<string, number>> {
  const work = mkdtempSync(join(tmpdir(), 'bench-spec-'));
  const models = (await makeModels(join(work, 'models'))).filter((m) => m.version !== '3');
  const files = new Map(models.map((m) => [`/${basename(m.archive)}`, m.archive]));
  const http = createHttpServer((req, res) => {
    const f = files.get(req.url ?? '');
    if (!f) return void res.writeHead(404).end();
    const body = readFileSync(f);
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  const httpPort = await listen(http);
  const aedes = await Aedes.createBroker();
  const mqttServer = createNetServer(aedes.handle);
  const brokerPort = await listen(mqttServer);
  const switches: Array<{ version: string; runtimeStartMs: number }> = [];
  const config = parseConfig({
    node: { name: 'bench', address: '127.0.0.1' },
    broker: { url: `mqtt://127.0.0.1:${brokerPort}` },
    stateDir: join(work, 'state'),
    gateway: { bind: '127.0.0.1', port: 0 },
    serving: { drainTimeoutMs: 1000, stopGraceMs: 1000 },
    admin: { socket: join(work, 'modeld.sock'), metricsPort: 0 },
  });
  const agent = await startAgent(config, silentLogger(), { onSwitch: (_ns, _n, version, t) => switches.push({ version, runtimeStartMs: t.runtimeStartMs }) });
  const cloud = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`);
  const statuses: Array<StatusContent & { at: number }> = [];
  cloud.on('message', (_t, p) => {
    const m = JSON.parse(p.toString());
    if (m.route?.operation === 'status') statuses.push({ ...m.content, at: performance.now() });
  });
  await cloud.subscribeAsync('default/ai/inferencemodel-status/bench', { qos: 1 });
  const manifest = models.map((m) => ({ version: m.version, downloadURL: `http://127.0.0.1:${httpPort}/${basename(m.archive)}`, sha256sum: m.sha256 }));
  let generation = 0;
  const apply = async (targetVersion: string) => {
    generation++;
    const env = makeEnvelope('update', { metadata: { name: 'lin', namespace: 'default', generation }, spec: { modelName: 'lin', deployToLayer: 'edge', frameworkType: 'onnx', manifest, targetVersion } }, { source: 'bench', resource: resourcePath('default', 'lin') });
    const t0 = performance.now();
    await cloud.publishAsync(specTopic('ai/inferencemodel', 'bench', 'default', 'lin'), JSON.stringify(env), { qos: 1 });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = statuses.find((x) => x.observedGeneration === generation && x.phase === 'Serving' && x.servingVersion === targetVersion);
      if (s) return s.at - t0;
      if (Date.now() > deadline) throw new Error(`version ${targetVersion} did not serve`);
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  try {
    // Wait for the agent's subscription, then put both versions in the store (installed once each).
    while (!agent.link.connected) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    await apply('1');
    await apply('2');
    const total: number[] = [];
    const runtime: number[] = [];
    for (let i = 0; i < opts.switches; i++) {
      const target = i % 2 === 0 ? '1' : '2';
      total.push(await apply(target));
      runtime.push(switches.at(-1)!.runtimeStartMs);
    }
    const out = {
      specToServingMs: round(median(total), 1),
      runtimeStartMs: round(median(runtime), 1),
      beyondRuntimeMs: round(median(total.map((t, i) => t - runtime[i])), 1),
    };
    opts.log(`spec -> serving with the archive in the store: ${out.specToServingMs} ms (median of ${opts.switches}), of which the runtime's own start ${out.runtimeStartMs} ms; beyond it ${out.beyondRuntimeMs} ms (target < 1000)`);
    return out;
  } finally {
    await cloud.endAsync();
    await agent.stop();
    // The runtime host outlives the agent by design; this benchmark's host goes with it.
    await agent.serving?.stopHost();
    mqttServer.close();
    await new Promise<void>((r) => aedes.close(() => r()));
    http.close();
    rmSync(work, { recursive: true, force: true });
  }
}
