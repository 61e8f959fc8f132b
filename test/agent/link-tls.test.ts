import { mkdtempSync, rmSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../agent/config/load.js';
import { MqttLink } from '../../agent/link/mqtt-link.js';
import { createLogger } from '../../agent/log.js';
import { openStore, type Store } from '../../agent/store/index.js';
import { DEFAULT_TOPIC_PREFIX, presenceTopic } from '../../shared/topics.js';
import { startMosquitto, type Broker, type BrokerOptions } from '../helpers/mosquitto.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { startAgentProcess } from '../helpers/agent-process.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// The broker link, proven (issue 14): the agent's MQTT link against a real mosquitto with a TLS
// listener, certificates made here with openssl. A refused connection says why, in words, once
// per outage and reason, and is retried with a growing delay.

let pki: TestPki;
let dir: string;
let store: Store;
let broker: Broker | undefined;
const links: MqttLink[] = [];
const clients: MqttClient[] = [];

beforeEach(() => {
  pki = makeTestPki();
  dir = mkdtempSync(join(tmpdir(), 'link-tls-'));
  store = openStore(join(dir, 'state.db'));
});

afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  for (const c of clients.splice(0)) await c.endAsync(true);
  await broker?.close();
  broker = undefined;
  store.close();
  rmSync(dir, { recursive: true, force: true });
  pki.cleanup();
});

async function tlsBroker(over: Partial<BrokerOptions> = {}): Promise<Broker> {
  broker = await startMosquitto({ tls: { caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey }, ...over });
  return broker;
}

interface LogLine {
  level: string;
  msg: string;
  reason?: string;
  err?: string;
}

function makeLink(brokerConfig: Record<string, unknown>) {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const config = parseConfig({ node: { name: 'n1' }, broker: { reconnectMs: 100, ...brokerConfig }, stateDir: dir });
  const link = new MqttLink({ config, log: createLogger({ level: 'debug', destination }), outbox: store.outbox, agentVersion: 'test', onMessage: () => {} });
  links.push(link);
  link.start();
  return { link, lines, warnings: () => lines.filter((l) => l.level === 'warn') };
}

/** A cloud-side client on the same TLS broker, to see what the link published. */
async function watcher(b: Broker, opts: mqtt.IClientOptions = {}) {
  const c = mqtt.connect(b.url, { ca: readFileSync(pki.caCert), reconnectPeriod: 200, ...opts });
  clients.push(c);
  const got: string[] = [];
  c.on('message', (t) => got.push(t));
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  await c.subscribeAsync('#', { qos: 1 });
  return got;
}

const connected = (link: MqttLink, what: string) => waitFor(() => link.connected, WAIT_MS, what);

describe('the broker link over TLS (real mosquitto, openssl certificates)', () => {
  it('verifies the broker against broker.tls.ca and publishes over mqtts://', async () => {
    const b = await tlsBroker();
    const seen = await watcher(b);
    const { link } = makeLink({ url: b.url, tls: { ca: pki.caCert } });
    await connected(link, 'the link to connect over TLS');
    await waitFor(() => seen.includes(presenceTopic(DEFAULT_TOPIC_PREFIX, 'n1')), WAIT_MS, 'presence over TLS');
  });

  it('mutual TLS: refused without a client certificate (said why), connected with one', async () => {
    const b = await tlsBroker({ tls: { caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey, requireCertificate: true } });
    const without = makeLink({ url: b.url, tls: { ca: pki.caCert } });
    await waitFor(() => without.warnings().some((l) => /client certificate/.test(l.reason ?? '')), WAIT_MS, 'a warning naming the missing client certificate');
    expect(without.link.connected).toBe(false);
    await without.link.stop();

    const withCert = makeLink({ url: b.url, tls: { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey } });
    await connected(withCert.link, 'the link to connect with its client certificate');
  });

  it('username and password: a wrong password is refused with the reason, the right one connects', async () => {
    const b = await tlsBroker({ users: { edge: 'right-pass' } });
    const wrong = makeLink({ url: b.url, username: 'edge', password: 'wrong-pass', tls: { ca: pki.caCert } });
    await waitFor(() => wrong.warnings().some((l) => /username or password/.test(l.reason ?? '')), WAIT_MS, 'a warning about the credentials');
    expect(wrong.link.connected).toBe(false);
    expect(JSON.stringify(wrong.lines)).not.toContain('wrong-pass');
    await wrong.link.stop();

    const right = makeLink({ url: b.url, username: 'edge', password: 'right-pass', tls: { ca: pki.caCert } });
    await connected(right.link, 'the link to connect with the right password');
  });

  it('a broker signed by another CA is refused, said once, and retried with a growing delay', async () => {
    const b = await tlsBroker();
    const { link, lines, warnings } = makeLink({ url: b.url, tls: { ca: pki.otherCaCert }, reconnectMaxMs: 800 });
    await waitFor(() => lines.filter((l) => l.msg === 'reconnecting to broker').length >= 4, WAIT_MS, 'four reconnect attempts');
    expect(link.connected).toBe(false);
    const refused = warnings().filter((l) => l.msg === 'broker connection refused');
    expect(refused).toHaveLength(1);
    expect(refused[0].reason).toMatch(/not signed by a CA this node trusts \(broker\.tls\.ca\)/);
    // The delays asked for double from reconnectMs up to reconnectMaxMs (what the link asked for,
    // not a measured time).
    const delays = lines.filter((l) => l.msg === 'reconnecting to broker').map((l) => (l as unknown as { delayMs: number }).delayMs);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 800]);
  });

  it('an expired broker certificate is refused with that reason', async () => {
    const b = await tlsBroker({ tls: { caFile: pki.caCert, certFile: pki.expiredServerCert, keyFile: pki.expiredServerKey } });
    const { link, warnings } = makeLink({ url: b.url, tls: { ca: pki.caCert } });
    await waitFor(() => warnings().some((l) => /expired/.test(l.reason ?? '')), WAIT_MS, 'a warning that the certificate expired');
    expect(link.connected).toBe(false);
  });
});

describe('TLS files the agent cannot read', () => {
  it('a missing broker.tls.ca stops the daemon at start with the key and the reason (exit 78), not a stack', async () => {
    const work = mkdtempSync(join(tmpdir(), 'link-tls-cfg-'));
    const agent = startAgentProcess({ node: { name: 'n1' }, broker: { url: 'mqtts://127.0.0.1:1', tls: { ca: join(work, 'missing-ca.pem') } }, stateDir: join(work, 'state'), admin: { metricsPort: 0 } }, ['--no-serve']);
    try {
      expect(await agent.exited).toBe(78);
      expect(agent.stderr()).toMatch(/ConfigInvalid: broker\.tls\.ca: cannot read .*missing-ca\.pem: ENOENT/);
    } finally {
      await agent.end();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
