import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../agent/config/load.js';
import { MqttLink } from '../../agent/link/mqtt-link.js';
import { silentLogger } from '../../agent/log.js';
import { openStore, type Store } from '../../agent/store/index.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

let broker: Broker;
let dir: string;
let store: Store;
let links: MqttLink[] = [];
let clients: MqttClient[] = [];

const STATUS = 'default/ai/inferencemodel-status/n1';

function makeLink(s = store) {
  const config = parseConfig({ node: { name: 'n1' }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir: dir });
  const link = new MqttLink({ config, log: silentLogger(), outbox: s.outbox, agentVersion: 'test', onMessage: () => {} });
  links.push(link);
  return link;
}

/** A cloud-side subscriber with a persistent session, so nothing is lost while it reconnects. */
async function subscriber(topic: string) {
  const got: Array<{ topic: string; body: any; retain: boolean }> = [];
  const c = mqtt.connect(broker.url, { clientId: `sub-${Math.random()}`, clean: false, reconnectPeriod: 200 });
  clients.push(c);
  c.on('message', (t, p, packet) => got.push({ topic: t, body: JSON.parse(p.toString()), retain: packet.retain }));
  await new Promise<void>((r) => c.once('connect', () => r()));
  await c.subscribeAsync(topic, { qos: 1 });
  return got;
}

beforeEach(async () => {
  broker = await startMosquitto({ persistence: true });
  dir = mkdtempSync(join(tmpdir(), 'link-'));
  store = openStore(join(dir, 'state.db'));
});

afterEach(async () => {
  for (const l of links) await l.stop();
  for (const c of clients) await c.endAsync(true);
  links = [];
  clients = [];
  await broker.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const statuses = (got: Array<{ body: any }>) => got.filter((m) => m.body.route?.operation === 'status').map((m) => m.body.content.seq as number);

describe('MQTT link', () => {
  it('announces online presence (retained) and says hello after connecting', async () => {
    const hello = await subscriber(STATUS);
    const link = makeLink();
    link.start();
    await waitFor(() => hello.some((m) => m.body.route.operation === 'hello'));
    const presence = await subscriber('ai/inferencemodel/n1/_agent');
    await waitFor(() => presence.length > 0);
    expect(presence[0].retain).toBe(true);
    expect(presence[0].body.state).toBe('online');
  });

  it('delivers queued statuses in order and empties the outbox only after the broker acked', async () => {
    const got = await subscriber(STATUS);
    const link = makeLink();
    for (let i = 0; i < 100; i++) link.enqueue(STATUS, JSON.stringify({ route: { operation: 'status' }, content: { seq: i } }));
    expect(store.outbox.depth()).toBe(100);
    link.start();
    await waitFor(() => statuses(got).length >= 100);
    expect(statuses(got)).toEqual([...Array(100).keys()]);
    await waitFor(() => store.outbox.depth() === 0);
  });

  it('keeps statuses through a broker outage and delivers every one, in order', async () => {
    const got = await subscriber(STATUS);
    const link = makeLink();
    link.start();
    await waitFor(() => link.connected);
    for (let i = 0; i < 10; i++) link.enqueue(STATUS, JSON.stringify({ route: { operation: 'status' }, content: { seq: i } }));
    await waitFor(() => statuses(got).length >= 10);
    await broker.pause();
    for (let i = 10; i < 40; i++) link.enqueue(STATUS, JSON.stringify({ route: { operation: 'status' }, content: { seq: i } }));
    expect(store.outbox.depth()).toBeGreaterThanOrEqual(30);
    await broker.start();
    await waitFor(() => new Set(statuses(got)).size >= 40, WAIT_MS);
    // At least once: a message may come twice, but first arrivals are in order.
    const firsts = statuses(got).filter((s, i, all) => all.indexOf(s) === i);
    expect(firsts).toEqual([...Array(40).keys()]);
    await waitFor(() => store.outbox.depth() === 0);
  });

  it('delivers statuses written before an agent restart', async () => {
    const got = await subscriber(STATUS);
    await broker.pause();
    const first = makeLink();
    first.start();
    for (let i = 0; i < 5; i++) first.enqueue(STATUS, JSON.stringify({ route: { operation: 'status' }, content: { seq: i } }));
    await first.stop();
    store.close();
    store = openStore(join(dir, 'state.db'));
    expect(store.outbox.depth()).toBe(5);
    await broker.start();
    const second = makeLink(store);
    second.start();
    await waitFor(() => statuses(got).length >= 5, WAIT_MS);
    expect(statuses(got)).toEqual([0, 1, 2, 3, 4]);
  });
});
