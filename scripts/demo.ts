// The whole story in one command: an embedded MQTT broker, a local HTTP server holding real ONNX
// models, the modeld agent, and specs published the way the controller publishes them.
//   npm run demo            (add -- --keep to leave the state directory for a look)
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { parseConfig } from '../agent/config/load.js';
import { createLogger } from '../agent/log.js';
import { startAgent } from '../agent/main.js';
import { makeEnvelope, resourcePath, specTopic, type StatusContent } from '../shared/index.js';
import { makeModels } from './make-models.js';

const NODE = 'edge-demo';
const t0 = Date.now();
const stamp = () => `+${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s`;
const say = (what: string) => console.log(`${stamp()}  ${what}`);

const listen = (srv: Server | ReturnType<typeof createNetServer>) =>
  new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as AddressInfo).port)));

async function main() {
  const keep = process.argv.includes('--keep');
  const work = mkdtempSync(join(tmpdir(), 'modeld-demo-'));
  const stateDir = join(work, 'state');
  mkdirSync(stateDir);
  console.log(`modeld demo — work directory ${work}\n`);

  // 1. Real models: three versions of y = x*w + b as ONNX files in .tar.gz archives (v3 is broken).
  const models = await makeModels(join(work, 'models'));
  say(`made models: ${models.map((m) => `v${m.version} (${m.sha256.slice(0, 12)}…)`).join(', ')}`);

  // 2. An HTTP server holding them, and an embedded MQTT broker (aedes) standing in for edgecore's.
  const files = new Map(models.map((m) => [`/${basename(m.archive)}`, m.archive]));
  const http = createHttpServer((req, res) => {
    const file = files.get(req.url ?? '');
    if (!file) return void res.writeHead(404).end();
    const body = readFileSync(file);
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/gzip' }).end(body);
  });
  const httpPort = await listen(http);
  const aedes = await Aedes.createBroker();
  const mqttServer = createNetServer(aedes.handle);
  const brokerPort = await listen(mqttServer);
  say(`broker on mqtt://127.0.0.1:${brokerPort}, archives on http://127.0.0.1:${httpPort}`);

  // 3. The agent, configured as on a node (its JSON log goes to a file, the timeline to the screen).
  const config = parseConfig({
    node: { name: NODE, labels: { demo: 'yes' }, address: '127.0.0.1' },
    broker: { url: `mqtt://127.0.0.1:${brokerPort}`, reconnectMs: 500 },
    stateDir,
    gateway: { bind: '127.0.0.1', port: 0 },
    serving: { startTimeoutMs: 20_000, drainTimeoutMs: 2_000, stopGraceMs: 2_000 },
    admin: { socket: join(work, 'modeld.sock'), metricsPort: 0 },
    fetch: { progressIntervalMs: 200 },
  });
  const logFile = join(work, 'agent.log');
  const log = createLogger({ level: 'info', destination: createWriteStream(logFile) });
  const agent = await startAgent(config, log);
  const gateway = agent.serving!.gatewayUrl();
  say(`agent started: node ${NODE}, gateway ${gateway}, log ${logFile}`);

  // 4. The controller's side: publish specs, watch statuses.
  const cloud = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { clientId: 'demo-controller' });
  const statuses: StatusContent[] = [];
  cloud.on('message', (_topic, payload) => {
    const msg = JSON.parse(payload.toString());
    if (msg.route?.operation === 'hello') return say(`hello   from ${msg.content.node} (asks for a full sync)`);
    if (msg.route?.operation !== 'status') return;
    const s = msg.content as StatusContent;
    statuses.push(s);
    const progress = s.progress ? `  ${s.progress.bytes}/${s.progress.totalBytes ?? '?'} bytes` : '';
    const why = s.reason ? `  reason=${s.reason}` : '';
    say(`status  ${s.namespace}/${s.name} gen=${s.observedGeneration} ${s.phase.padEnd(11)} target=${s.targetVersion ?? '-'} serving=${s.servingVersion ?? '-'}${progress}${why}`);
  });
  await cloud.subscribeAsync(`default/ai/inferencemodel-status/${NODE}`, { qos: 1 });

  const manifest = models.map((m) => ({ version: m.version, downloadURL: `http://127.0.0.1:${httpPort}/${basename(m.archive)}`, sha256sum: m.sha256 }));
  let generation = 0;
  const publish = async (targetVersion: string) => {
    generation++;
    const env = makeEnvelope(
      'update',
      {
        metadata: { name: 'linear', namespace: 'default', uid: 'demo-uid', generation },
        spec: { modelName: 'linear', deployToLayer: 'edge', frameworkType: 'onnx', nodeSelector: { demo: 'yes' }, manifest, targetVersion, replicas: 1 },
      },
      { source: 'modeld-controller', resource: resourcePath('default', 'linear') },
    );
    say(`publish spec gen=${generation} targetVersion=${targetVersion}`);
    await cloud.publishAsync(specTopic('ai/inferencemodel', NODE, 'default', 'linear'), JSON.stringify(env), { qos: 1 });
  };
  const until = async (what: string, cond: (s: StatusContent) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!statuses.some((s) => s.observedGeneration === generation && cond(s))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const infer = async () => {
    const res = await fetch(`${gateway}/v2/models/linear/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [10] }] }),
    });
    const body = (await res.json()) as { model_version?: string; outputs?: Array<{ data: number[] }>; error?: string };
    say(`infer   x=10 through the gateway -> HTTP ${res.status} y=${body.outputs?.[0]?.data?.[0]} (model_version ${body.model_version ?? '-'})${body.error ? ` error=${body.error}` : ''}`);
    return body;
  };

  let ok = true;
  const expect = (cond: boolean, what: string) => {
    if (!cond) ok = false;
    say(`${cond ? 'ok     ' : 'FAILED '} ${what}`);
  };

  console.log('\n— v1: y = 2x + 1');
  await publish('1');
  await until('v1 serving', (s) => s.phase === 'Serving' && s.servingVersion === '1');
  expect((await infer()).outputs?.[0]?.data?.[0] === 21, 'v1 answers 21');

  console.log('\n— targetVersion 1 -> 2: y = 3x - 1, switched without dropping requests');
  await publish('2');
  await until('v2 serving', (s) => s.phase === 'Serving' && s.servingVersion === '2');
  expect((await infer()).outputs?.[0]?.data?.[0] === 29, 'v2 answers 29');

  console.log('\n— targetVersion 2 -> 3: a broken model; it never takes traffic, v2 keeps serving');
  await publish('3');
  await until('v3 failed', (s) => s.phase === 'Failed');
  expect((await infer()).outputs?.[0]?.data?.[0] === 29, 'v2 still answers 29 after v3 failed');

  console.log('');
  await cloud.endAsync();
  await agent.stop();
  await new Promise((r) => mqttServer.close(r));
  await new Promise<void>((r) => aedes.close(() => r()));
  http.close();
  if (!keep) rmSync(work, { recursive: true, force: true });
  say(ok ? 'demo finished: every step did what it should' : 'demo finished WITH FAILURES');
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(`demo failed: ${err instanceof Error ? err.stack : err}`);
  process.exit(1);
});
