import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readBrokerSecrets } from '../../controller/broker-files.js';
import { OptionError } from '../../controller/options.js';
import { mqttTransport, type MqttTransportOptions } from '../../controller/transport/mqtt.js';
import type { Transport } from '../../controller/transport/types.js';
import { DEFAULT_STATUS_TOPIC, DEFAULT_TOPIC_PREFIX } from '../../shared/index.js';
import { startMosquitto, type Broker, type BrokerOptions } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';
import { startApi, tempDir } from './harness.js';

// The broker link, proven for the controller (issue 14, item 2): its MQTT transport against a
// real mosquitto with a TLS listener, certificates made here with openssl. A refused connection
// says why (log and /healthz) and is retried with a growing delay.

let pki: TestPki;
let broker: Broker | undefined;
const transports: Transport[] = [];
const clients: MqttClient[] = [];
const cleanups: Array<() => unknown> = [];

beforeEach(() => {
  pki = makeTestPki();
});

afterEach(async () => {
  for (const t of transports.splice(0)) await t.stop();
  for (const c of clients.splice(0)) await c.endAsync(true);
  for (const c of cleanups.splice(0).reverse()) await c();
  await broker?.close();
  broker = undefined;
  pki.cleanup();
});

async function tlsBroker(over: Partial<BrokerOptions> = {}): Promise<Broker> {
  broker = await startMosquitto({ tls: { caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey }, ...over });
  return broker;
}

interface Line {
  level: number;
  msg: string;
  reason?: string;
  delayMs?: number;
}

async function transport(over: Partial<MqttTransportOptions>) {
  const lines: Line[] = [];
  const out = new Writable({
    write(chunk, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const t = mqttTransport({
    brokerUrl: broker!.url,
    clientId: `ctl-tls-${process.pid}-${transports.length}`,
    topicPrefix: DEFAULT_TOPIC_PREFIX,
    statusTopic: DEFAULT_STATUS_TOPIC,
    reconnectMs: 100,
    reconnectMaxMs: 800,
    log: pino({ level: 'debug' }, out),
    ...over,
  });
  transports.push(t);
  const got: string[] = [];
  await t.start((m) => got.push(m.topic ?? ''));
  return { t, lines, got, warnings: () => lines.filter((l) => l.level === 40) };
}

/** A node-side client on the same broker: what the controller receives proves the link works both ways. */
async function nodeClient(opts: mqtt.IClientOptions = {}) {
  const c = mqtt.connect(broker!.url, { ca: readFileSync(pki.caCert), reconnectPeriod: 200, ...opts });
  clients.push(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

const tls = (files: { ca?: string; cert?: string; key?: string }) => readBrokerSecrets({ brokerCa: files.ca, brokerCert: files.cert, brokerKey: files.key }, {}).tls;

describe("the controller's mqtt transport over TLS (real mosquitto, openssl certificates)", () => {
  it('verifies the broker against --broker-ca, publishes and receives over mqtts://', async () => {
    await tlsBroker();
    const { t, got } = await transport({ tls: tls({ ca: pki.caCert }) });
    await waitFor(() => t.connected(), WAIT_MS, 'the transport to connect over TLS');
    const node = await nodeClient();
    await node.subscribeAsync(`${DEFAULT_TOPIC_PREFIX}/n1/#`, { qos: 1 });
    const seen: string[] = [];
    node.on('message', (topic) => seen.push(topic));
    await t.publish('n1', `${DEFAULT_TOPIC_PREFIX}/n1/_sync`, '{}');
    await waitFor(() => seen.includes(`${DEFAULT_TOPIC_PREFIX}/n1/_sync`), WAIT_MS, 'the node to get the publish');
    // The subscription is made on connect; publish until it is in place.
    await waitFor(async () => (await node.publishAsync(`${DEFAULT_TOPIC_PREFIX}/n1/_agent`, 'online', { qos: 1 }), got.length > 0), WAIT_MS, 'presence received');
  });

  it('mutual TLS: refused without a client certificate (said why), connected with --broker-cert/--broker-key', async () => {
    await tlsBroker({ tls: { caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey, requireCertificate: true } });
    const without = await transport({ tls: tls({ ca: pki.caCert }) });
    await waitFor(() => without.warnings().some((l) => /client certificate.*--broker-cert and --broker-key/.test(l.reason ?? '')), WAIT_MS, 'a warning naming the missing client certificate');
    expect(without.t.connected()).toBe(false);
    expect(without.t.problem?.()).toMatch(/client certificate/);

    const withCert = await transport({ tls: tls({ ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey }) });
    await waitFor(() => withCert.t.connected(), WAIT_MS, 'the transport to connect with its client certificate');
    expect(withCert.t.problem?.()).toBeUndefined();
  });

  it('username and a password from a file: a wrong one is refused with the reason (never logged), the right one connects', async () => {
    await tlsBroker({ users: { cloud: 'right-pass' } });
    const dir = tempDir();
    cleanups.push(() => dir.cleanup());
    writeFileSync(join(dir.path, 'wrong'), 'wrong-pass\n');
    writeFileSync(join(dir.path, 'right'), 'right-pass\n');
    const wrong = await transport({ username: 'cloud', password: readBrokerSecrets({ brokerPasswordFile: join(dir.path, 'wrong') }, {}).password, tls: tls({ ca: pki.caCert }) });
    await waitFor(() => wrong.warnings().some((l) => /username or password.*--broker-password-file/.test(l.reason ?? '')), WAIT_MS, 'a warning about the credentials');
    expect(wrong.t.connected()).toBe(false);
    expect(JSON.stringify(wrong.lines)).not.toContain('wrong-pass');

    const right = await transport({ username: 'cloud', password: readBrokerSecrets({ brokerPasswordFile: join(dir.path, 'right') }, {}).password, tls: tls({ ca: pki.caCert }) });
    await waitFor(() => right.t.connected(), WAIT_MS, 'the transport to connect with the right password (trailing newline of the file dropped)');
  });

  it('a broker signed by another CA is refused, warned once, and retried with a doubling delay', async () => {
    await tlsBroker();
    const { t, lines, warnings } = await transport({ tls: tls({ ca: pki.otherCaCert }) });
    await waitFor(() => lines.filter((l) => l.msg === 'reconnecting to broker').length >= 5, WAIT_MS, 'five reconnect attempts');
    expect(t.connected()).toBe(false);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0].reason).toMatch(/not signed by a CA this controller trusts \(--broker-ca\)/);
    // The delays asked for (not measured times): doubling from reconnectMs, capped at reconnectMaxMs.
    expect(lines.filter((l) => l.msg === 'reconnecting to broker').map((l) => l.delayMs).slice(0, 5)).toEqual([100, 200, 400, 800, 800]);
  });

  it('an expired broker certificate is refused with that reason', async () => {
    await tlsBroker({ tls: { caFile: pki.caCert, certFile: pki.expiredServerCert, keyFile: pki.expiredServerKey } });
    const { t, warnings } = await transport({ tls: tls({ ca: pki.caCert }) });
    await waitFor(() => warnings().some((l) => /certificate has expired/.test(l.reason ?? '')), WAIT_MS, 'a warning that the certificate expired');
    expect(t.connected()).toBe(false);
    expect(t.problem?.()).toMatch(/expired/);
  });

  it('a TLS file that cannot be read is an option error naming the flag', () => {
    expect(() => readBrokerSecrets({ brokerCa: '/nonexistent/ca.pem' }, {})).toThrow(OptionError);
    expect(() => readBrokerSecrets({ brokerCa: '/nonexistent/ca.pem' }, {})).toThrow(/--broker-ca: cannot read \/nonexistent\/ca\.pem: ENOENT/);
  });
});

describe('modeld-controller as a process against a TLS broker', () => {
  const root = new URL('../..', import.meta.url).pathname;
  let controller: ProcessTree | undefined;
  afterEach(async () => {
    await controller?.end();
    controller = undefined;
  });

  async function run(args: string[]) {
    const api = await startApi();
    cleanups.push(() => api.stop());
    const dir = tempDir();
    cleanups.push(() => dir.cleanup());
    const kubeconfig = api.writeKubeconfig(join(dir.path, 'kubeconfig'));
    const metricsPort = await freePort();
    let logs = '';
    controller = spawnTree(process.execPath, ['--import', 'tsx', 'controller/main.ts', '--kubeconfig', kubeconfig, '--no-leader-elect', '--metrics-bind', '127.0.0.1', '--metrics-port', String(metricsPort), '--broker-url', broker!.url, ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    controller.child.stdout!.on('data', (d) => (logs += d));
    controller.child.stderr!.on('data', (d) => (logs += d));
    const health = async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => undefined);
      return res ? ((await res.json()) as { transport: boolean; transportProblem?: string }) : undefined;
    };
    return { dir: dir.path, logs: () => logs, health };
  }

  it('/healthz names why the broker refused it (wrong CA), and the log says the same', async () => {
    await tlsBroker();
    const c = await run(['--broker-ca', pki.otherCaCert, '--broker-reconnect-ms', '100']);
    await waitFor(async () => /not signed by a CA/.test((await c.health())?.transportProblem ?? ''), WAIT_MS, '/healthz to name the untrusted certificate');
    expect(c.logs()).toMatch(/not signed by a CA this controller trusts \(--broker-ca\)/);
  });

  it('connects with --broker-ca, a client certificate and --broker-password-file; the password is on no command line', async () => {
    await tlsBroker({ users: { cloud: 's3cret-pass' }, tls: { caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey, requireCertificate: true } });
    const dir = tempDir();
    cleanups.push(() => dir.cleanup());
    writeFileSync(join(dir.path, 'password'), 's3cret-pass\n');
    const c = await run(['--broker-ca', pki.caCert, '--broker-cert', pki.clientCert, '--broker-key', pki.clientKey, '--broker-username', 'cloud', '--broker-password-file', join(dir.path, 'password')]);
    await waitFor(async () => (await c.health())?.transport === true, WAIT_MS, '/healthz to show the transport connected');
    expect(readFileSync(`/proc/${controller!.child.pid}/cmdline`, 'utf8')).not.toContain('s3cret-pass');
    expect(c.logs()).not.toContain('s3cret-pass');
  });

  it('an unreadable --broker-ca stops it at start with exit 2 and the flag named', async () => {
    broker = await startMosquitto();
    const c = await run(['--broker-ca', '/nonexistent/ca.pem']);
    expect((await controller!.exited).code).toBe(2);
    expect(c.logs()).toMatch(/--broker-ca: cannot read \/nonexistent\/ca\.pem: ENOENT/);
  });
});
