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
import { isRunning } from '../agent/runtime/pidfiles.js';
import { makeEnvelope, resourcePath, specTopic, type StatusContent } from '../shared/index.js';
import { makeLinearArchive, makeModels } from './make-models.js';

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

  // 1. Real models: three versions of y = x*w + b as ONNX files in .tar.gz archives (v3 is broken),
  //    and two other models, all served by one runtime host.
  const models = await makeModels(join(work, 'models'));
  const others = [
    { name: 'double', w: 2, b: 0, ...(await makeLinearArchive(join(work, 'models'), 'double', 2, 0)) },
    { name: 'offset', w: 1, b: 100, ...(await makeLinearArchive(join(work, 'models'), 'offset', 1, 100)) },
  ];
  say(`made models: linear ${models.map((m) => `v${m.version} (${m.sha256.slice(0, 12)}…)`).join(', ')}; ${others.map((o) => `${o.name} (y = ${o.w}x + ${o.b})`).join(', ')}`);

  // 2. An HTTP server holding them, and an embedded MQTT broker (aedes) standing in for edgecore's.
  const files = new Map([...models, ...others].map((m) => [`/${basename(m.archive)}`, m.archive]));
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
  //    It starts the runtime host (`modeld host`), which owns the node endpoint.
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
  const serving = agent.serving!;
  const gateway = serving.gatewayUrl();
  const firstHost = await serving.host.state();
  say(`agent started: node ${NODE} (pid ${process.pid}); runtime host pid ${firstHost.pid} owns the node endpoint ${gateway}; log ${logFile}`);

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
    const backend = s.backend ? `  backend=${s.backend}` : '';
    say(`status  ${s.namespace}/${s.name} gen=${s.observedGeneration} ${s.phase.padEnd(11)} target=${s.targetVersion ?? '-'} serving=${s.servingVersion ?? '-'}${backend}${progress}${why}`);
  });
  await cloud.subscribeAsync(`default/ai/inferencemodel-status/${NODE}`, { qos: 1 });

  const manifest = models.map((m) => ({ version: m.version, downloadURL: `http://127.0.0.1:${httpPort}/${basename(m.archive)}`, sha256sum: m.sha256 }));
  const generations = new Map<string, number>();
  const publish = async (name: string, targetVersion: string, list = manifest) => {
    const generation = (generations.get(name) ?? 0) + 1;
    generations.set(name, generation);
    const env = makeEnvelope(
      'update',
      {
        metadata: { name, namespace: 'default', uid: `demo-${name}`, generation },
        spec: { modelName: name, deployToLayer: 'edge', frameworkType: 'onnx', nodeSelector: { demo: 'yes' }, manifest: list, targetVersion, replicas: 1 },
      },
      { source: 'modeld-controller', resource: resourcePath('default', name) },
    );
    say(`publish spec ${name} gen=${generation} targetVersion=${targetVersion}`);
    await cloud.publishAsync(specTopic('ai/inferencemodel', NODE, 'default', name), JSON.stringify(env), { qos: 1 });
  };
  const until = async (name: string, what: string, cond: (s: StatusContent) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!statuses.some((s) => s.name === name && s.observedGeneration === generations.get(name) && cond(s))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const ask = async (name: string, x: number) => {
    const res = await fetch(`${gateway}/v2/models/${name}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [x] }] }),
    });
    return { status: res.status, ...((await res.json()) as { model_version?: string; outputs?: Array<{ data: number[] }>; error?: string }) };
  };
  const infer = async (name = 'linear') => {
    const body = await ask(name, 10);
    say(`infer   ${name} x=10 through the node endpoint -> HTTP ${body.status} y=${body.outputs?.[0]?.data?.[0]} (model_version ${body.model_version ?? '-'})${body.error ? ` error=${body.error}` : ''}`);
    return body;
  };

  let ok = true;
  const expect = (cond: boolean, what: string) => {
    if (!cond) ok = false;
    say(`${cond ? 'ok     ' : 'FAILED '} ${what}`);
  };
  const hostSays = async () => {
    const h = await serving.host.state();
    say(`host    pid ${h.pid} serves ${h.routes.length} models in one process: ${h.routes.map((r) => `${r.modelName}@${r.version} (${r.kind}, ${r.backend ?? '-'}, ${r.readyReplicas}/${r.replicas} ready)`).join(', ')}`);
    return h;
  };

  console.log('\n— three models, one runtime host: linear v1 (y = 2x + 1), double (y = 2x), offset (y = x + 100)');
  await publish('linear', '1');
  for (const o of others) await publish(o.name, '1', [{ version: '1', downloadURL: `http://127.0.0.1:${httpPort}/${basename(o.archive)}`, sha256sum: o.sha256 }]);
  await until('linear', 'linear v1 serving', (s) => s.phase === 'Serving' && s.servingVersion === '1');
  for (const o of others) await until(o.name, `${o.name} serving`, (s) => s.phase === 'Serving' && s.servingVersion === '1');
  expect((await infer()).outputs?.[0]?.data?.[0] === 21, 'linear v1 answers 21');
  for (const o of others) expect((await infer(o.name)).outputs?.[0]?.data?.[0] === 10 * o.w + o.b, `${o.name} answers ${10 * o.w + o.b}`);
  const h1 = await hostSays();
  expect(h1.pid === firstHost.pid && h1.routes.length === 3 && h1.routes.every((r) => r.kind === 'session' && r.readyReplicas === 1), 'the three models are sessions of the one host process');
  const meta = (await (await fetch(`${gateway}/v2/`)).json()) as { extensions?: string[] };
  expect(!!meta.extensions?.includes('binary_tensor_data'), `GET /v2/ advertises the extensions: ${JSON.stringify(meta.extensions)}`);

  console.log('\n— targetVersion 1 -> 2 for linear: y = 3x - 1, blue/green inside the host while requests keep coming');
  let stop = false;
  const seen = { requests: 0, failed: 0, v1: 0, v2: 0 };
  const traffic = (async () => {
    while (!stop) {
      const r = await ask('linear', 10).catch(() => ({ status: 0 }) as Awaited<ReturnType<typeof ask>>);
      seen.requests++;
      const y = r.outputs?.[0]?.data?.[0];
      if (r.status !== 200 || (y !== 21 && y !== 29)) seen.failed++;
      else if (y === 21) seen.v1++;
      else seen.v2++;
    }
  })();
  await publish('linear', '2');
  await until('linear', 'linear v2 serving', (s) => s.phase === 'Serving' && s.servingVersion === '2');
  const n = seen.requests;
  while (seen.requests < n + 20) await new Promise((r) => setTimeout(r, 10));
  stop = true;
  await traffic;
  say(`traffic during the switch: ${seen.requests} requests, ${seen.v1} answered by v1, ${seen.v2} by v2, ${seen.failed} failed`);
  expect(seen.failed === 0 && seen.v2 > 0, 'switched without dropping a request');
  expect((await infer()).outputs?.[0]?.data?.[0] === 29, 'linear v2 answers 29');
  const h2 = await hostSays();
  expect(h2.pid === firstHost.pid, 'the same host process: no new process for the new version');

  console.log('\n— targetVersion 2 -> 3 for linear: a broken model; it never takes traffic, v2 keeps serving');
  await publish('linear', '3');
  await until('linear', 'linear v3 failed', (s) => s.phase === 'Failed');
  expect((await infer()).outputs?.[0]?.data?.[0] === 29, 'linear v2 still answers 29 after v3 was refused');
  for (const o of others) expect((await infer(o.name)).outputs?.[0]?.data?.[0] === 10 * o.w + o.b, `${o.name} still answers ${10 * o.w + o.b}`);

  console.log('');
  await cloud.endAsync();
  await agent.stop();
  // The runtime host outlives an agent that stops (restarting the agent does not touch the
  // models); the demo is over, so it stops too.
  const hostPid = (await serving.host.state()).pid;
  await serving.stopHost();
  expect(!isRunning(hostPid), `the runtime host (pid ${hostPid}) stopped with the demo`);
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
