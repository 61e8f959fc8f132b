import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkPort } from '../../agent/cli/doctor-checks.js';
import { ConfigSchema } from '../../agent/config/schema.js';
import { silentLogger } from '../../agent/log.js';
import { Gateway } from '../../agent/runtime/gateway.js';
import type { ModelContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// The node's own listeners (issue 14, item 5): the real agent as a child process, its endpoint
// on HTTPS with a certificate of a test CA and a bearer token from a file; /metrics on loopback.

const NODE = 'edge-1';
const TOKEN = 'tok-3f9a1c7e5b2d4860';
let work: string;
let pki: TestPki;
let broker: Broker;
let cloud: Cloud;
let server: ChaosServer | undefined;
let agent: AgentProcess | undefined;
let port: number;

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'gateway-tls-'));
  pki = makeTestPki();
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
  port = await freePort();
});

afterEach(async () => {
  await agent?.end();
  agent = undefined;
  await cloud.close();
  await server?.stop();
  server = undefined;
  await broker.close();
  pki.cleanup();
  rmSync(work, { recursive: true, force: true });
});

function startAgent(gateway: Record<string, unknown>) {
  const hellos = cloud.hellos.length;
  agent = startAgentProcess({
    node: { name: NODE, address: '127.0.0.1' },
    broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
    stateDir: join(work, 'state'),
    gateway: { bind: '127.0.0.1', port, ...gateway },
    serving: { startTimeoutMs: 120_000, drainTimeoutMs: 2000, stopGraceMs: 2000, probeIntervalMs: 200 },
    admin: { metricsPort: 0 },
  });
  return waitFor(() => cloud.hellos.length > hellos, WAIT_MS, 'hello');
}

async function serveLinear() {
  const a = await makeModelArchive(join(work, 'v1.tar.gz'), { w: 2, b: 1 });
  server = await startChaosServer({ body: readFileSync(a.path) });
  const content: ModelContent = {
    metadata: { name: 'linear', namespace: 'default', uid: 'u1', generation: 1 },
    spec: { modelName: 'linear', deployToLayer: 'edge', frameworkType: 'onnx', manifest: [{ version: '1', downloadURL: server.urlFor('/v1.tar.gz'), sha256sum: a.sha256 }], targetVersion: '1' },
  };
  await cloud.update(NODE, content);
  return cloud.waitStatus((s) => s.phase === 'Serving' && s.servingVersion === '1', { timeoutMs: 120_000, what: 'v1 serving' });
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request, over https trusting the test CA (or plain http); rejects when no answer comes. */
function call(path: string, opts: { token?: string; plain?: boolean; body?: unknown } = {}): Promise<Answer> {
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) };
  return new Promise((resolve, reject) => {
    const done = (res: import('node:http').IncomingMessage) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    };
    const common = { host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', headers, agent: false as const };
    const req = opts.plain ? httpRequest(common, done) : httpsRequest({ ...common, ca: readFileSync(pki.caCert) }, done);
    req.once('error', reject);
    req.end(body);
  });
}

const inferBody = { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [10] }] };
const y = (a: Answer) => (JSON.parse(a.body) as { outputs: Array<{ data: number[] }> }).outputs[0].data[0];

describe("the node's listeners", { timeout: 240_000 }, () => {
  it('the endpoint over HTTPS with a bearer token: 401 with WWW-Authenticate without it, health probes open, plain HTTP refused, the model keeps serving', async () => {
    const tokenFile = join(work, 'gateway.token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    await startAgent({ tls: { cert: pki.serverCert, key: pki.serverKey }, tokenFile });
    const serving = await serveLinear();
    expect(serving.url).toBe(`https://127.0.0.1:${port}/v2/models/linear`);

    const ok = await call('/v2/models/linear/infer', { token: TOKEN, body: inferBody });
    expect(ok.status).toBe(200);
    expect(y(ok)).toBe(21);

    const missing = await call('/v2/models/linear/infer', { body: inferBody });
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="modeld"');
    const wrong = await call('/v2/models/linear/infer', { token: 'tok-wrong', body: inferBody });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="modeld", error="invalid_token"');
    // A token of the right length but one character off: refused too.
    expect((await call('/v2/models/linear/infer', { token: `${TOKEN.slice(0, -1)}1`, body: inferBody })).status).toBe(401);
    expect((await call('/v2/models')).status).toBe(401);
    expect((await call('/v2')).status).toBe(401);

    // Kubernetes-style probes carry no token.
    expect((await call('/v2/health/live')).status).toBe(200);
    expect((await call('/v2/health/ready')).status).toBe(200);

    // Plain HTTP on the TLS port gets no answer at all.
    await expect(call('/v2/health/live', { plain: true })).rejects.toThrow();

    // The refused requests changed nothing: the model still answers.
    const again = await call('/v2/models/linear/infer', { token: TOKEN, body: inferBody });
    expect(again.status).toBe(200);
    expect(y(again)).toBe(21);
    expect(JSON.stringify(agent!.logs) + agent!.stderr()).not.toContain(TOKEN);
    // /metrics listens on loopback unless admin.metricsBind says otherwise.
    expect(agent!.logs.find((l) => l.msg === 'metrics listening on /metrics')).toMatchObject({ bind: '127.0.0.1' });
  });

  it('a rotated token file takes effect without a restart', async () => {
    const tokenFile = join(work, 'gateway.token');
    writeFileSync(tokenFile, 'tok-old-1111\n');
    await startAgent({ tokenFile });
    await serveLinear();
    expect((await call('/v2/models', { plain: true, token: 'tok-old-1111' })).status).toBe(200);
    writeFileSync(tokenFile, 'tok-new-2222\n');
    await waitFor(async () => (await call('/v2/models', { plain: true, token: 'tok-new-2222' })).status === 200, WAIT_MS, 'the new token to be accepted');
    expect((await call('/v2/models', { plain: true, token: 'tok-old-1111' })).status).toBe(401);
  });

  it('an unreadable gateway.tls.key or gateway.tokenFile stops the daemon at start with the key named (exit 78)', async () => {
    agent = startAgentProcess({ node: { name: NODE }, broker: { url: broker.url }, stateDir: join(work, 'state'), gateway: { bind: '127.0.0.1', port, tls: { cert: pki.serverCert, key: join(work, 'missing.key') } }, admin: { metricsPort: 0 } });
    expect(await agent.exited).toBe(78);
    expect(agent.stderr() + JSON.stringify(agent.logs)).toMatch(/gateway\.tls\.key: cannot read .*missing\.key: ENOENT/);
    await agent.end();
    writeFileSync(join(work, 'empty.token'), '\n');
    agent = startAgentProcess({ node: { name: NODE }, broker: { url: broker.url }, stateDir: join(work, 'state'), gateway: { bind: '127.0.0.1', port, tokenFile: join(work, 'empty.token') }, admin: { metricsPort: 0 } });
    expect(await agent.exited).toBe(78);
    expect(agent.stderr() + JSON.stringify(agent.logs)).toMatch(/gateway\.tokenFile: .*empty\.token is empty/);
  });

  it('defaults: /metrics on loopback, the endpoint without TLS or token; a cert without its key is refused', () => {
    const c = ConfigSchema.parse({});
    expect(c.admin.metricsBind).toBe('127.0.0.1');
    expect(c.gateway.tls).toEqual({});
    expect(c.gateway.tokenFile).toBeUndefined();
    expect(ConfigSchema.safeParse({ gateway: { tls: { cert: '/etc/modeld/tls.crt' } } }).success).toBe(false);
  });
});

describe('modeld doctor and a guarded endpoint', () => {
  it('recognises the running modeld on a port that speaks HTTPS and wants a token', async () => {
    const tokenFile = join(work, 'gateway.token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const config = ConfigSchema.parse({ stateDir: join(work, 'state'), gateway: { bind: '127.0.0.1', port, tls: { cert: pki.serverCert, key: pki.serverKey }, tokenFile } });
    const gateway = new Gateway({ config, log: silentLogger() });
    await gateway.listen();
    try {
      const r = await checkPort('gateway', '127.0.0.1', port, 5000, { tls: true });
      expect(r).toMatchObject({ status: 'ok', message: `127.0.0.1:${port} is held by the running modeld` });
    } finally {
      await gateway.close();
    }
  });
});
