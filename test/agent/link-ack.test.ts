import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../agent/config/load.js';
import { MqttLink } from '../../agent/link/mqtt-link.js';
import { resendDelay } from '../../agent/link/resend-delay.js';
import { silentLogger } from '../../agent/log.js';
import { openStore, type Store } from '../../agent/store/index.js';
import { ackTopic, makeEnvelope } from '../../shared/index.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

// Guarantee 7 end to end: a status leaves the node's outbox only when the controller acks its
// msg_id, not when the broker PUBACKs it; until then it is published again, at a doubling and
// bounded interval, and a newer status of the same model replaces one already sent.

let broker: Broker;
let dir: string;
let store: Store;
let links: MqttLink[] = [];
let clients: MqttClient[] = [];

const STATUS = 'default/ai/inferencemodel-status/n1';

function makeLink(broker_: Partial<{ ackTimeoutMs: number; ackMaxDelayMs: number }> = {}) {
  const config = parseConfig({ node: { name: 'n1' }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000, ackTimeoutMs: 150, ackMaxDelayMs: 600, ...broker_ }, stateDir: dir });
  const link = new MqttLink({ config, log: silentLogger(), outbox: store.outbox, agentVersion: 'test', onMessage: () => {} });
  links.push(link);
  return link;
}

async function cloud() {
  const got: Array<{ id: string; key: string }> = [];
  const c = mqtt.connect(broker.url, { clientId: `cloud-${Math.random()}`, reconnectPeriod: 200 });
  clients.push(c);
  c.on('message', (_t, p) => {
    const m = JSON.parse(p.toString());
    if (m.route?.operation === 'status') got.push({ id: m.header.msg_id, key: m.content.key });
  });
  await new Promise<void>((r) => c.once('connect', () => r()));
  await c.subscribeAsync(STATUS, { qos: 1 });
  const ack = (...msgIds: string[]) =>
    c.publishAsync(ackTopic('ai/inferencemodel', 'n1'), JSON.stringify(makeEnvelope('ack', { node: 'n1', msgIds }, { source: 'modeld-controller', resource: 'node/n1' })), { qos: 1 });
  return { got, ack, client: c };
}

const status = (id: string, key = 'default/m') => JSON.stringify({ header: { msg_id: id, ack: true }, route: { operation: 'status' }, content: { key } });

beforeEach(async () => {
  broker = await startMosquitto();
  dir = mkdtempSync(join(tmpdir(), 'link-ack-'));
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

describe('status acks', () => {
  it('keeps a status after the PUBACK, resends it while unacked, and forgets it on the ack', async () => {
    const c = await cloud();
    const link = makeLink();
    link.start();
    link.enqueue(STATUS, status('s-1'), { msgId: 's-1', key: 'default/m' });
    await waitFor(() => c.got.filter((g) => g.id === 's-1').length >= 2, 10_000, 'the unacked status published again');
    expect(store.outbox.depth()).toBe(1);
    await c.ack('s-1');
    await waitFor(() => store.outbox.depth() === 0, 10_000, 'the acked status gone from the outbox');
  });

  it('a newer status of a model replaces one already published; statuses never published all go out', async () => {
    const c = await cloud();
    const link = makeLink({ ackTimeoutMs: 60_000, ackMaxDelayMs: 60_000 });
    link.start();
    await waitFor(() => link.connected);
    link.enqueue(STATUS, status('a-1', 'default/a'), { msgId: 'a-1', key: 'default/a' });
    link.enqueue(STATUS, status('b-1', 'default/b'), { msgId: 'b-1', key: 'default/b' });
    await waitFor(() => c.got.length >= 2 && store.outbox.awaitingAck() === 2, 10_000, 'both published');
    link.enqueue(STATUS, status('a-2', 'default/a'), { msgId: 'a-2', key: 'default/a' });
    await waitFor(() => c.got.some((g) => g.id === 'a-2') && store.outbox.awaitingAck() === 2, 10_000, 'a-2 published');
    expect(store.outbox.peek(10).map((e) => e.msgId)).toEqual(['b-1', 'a-2']);
    // Not yet published: nothing is replaced (every status the node makes goes out, in order).
    store.outbox.add(STATUS, status('c-1', 'default/c'), { msgId: 'c-1', key: 'default/c' });
    store.outbox.add(STATUS, status('c-2', 'default/c'), { msgId: 'c-2', key: 'default/c' });
    expect(store.outbox.peek(10).map((e) => e.msgId)).toEqual(['b-1', 'a-2', 'c-1', 'c-2']);
  });

  it('ignores an ack for another node or a malformed one, and keeps working', async () => {
    const c = await cloud();
    const link = makeLink({ ackTimeoutMs: 60_000, ackMaxDelayMs: 60_000 });
    link.start();
    link.enqueue(STATUS, status('s-1'), { msgId: 's-1', key: 'default/m' });
    await waitFor(() => store.outbox.awaitingAck() === 1, 10_000, 'published');
    const topic = ackTopic('ai/inferencemodel', 'n1');
    await c.client.publishAsync(topic, 'not json', { qos: 1 });
    await c.client.publishAsync(topic, JSON.stringify(makeEnvelope('ack', { node: 'n2', msgIds: ['s-1'] }, { source: 'x', resource: 'node/n2' })), { qos: 1 });
    await c.client.publishAsync(topic, JSON.stringify(makeEnvelope('ack', { node: 'n1', msgIds: ['s-1'] }, { source: 'x', resource: 'node/n1' })), { qos: 1 });
    await waitFor(() => store.outbox.depth() === 0, 10_000, 'the one good ack applied');
  });

  it('waits ackTimeoutMs, doubling, never more than ackMaxDelayMs: an old controller gets a bounded trickle', () => {
    const b = { ackTimeoutMs: 30_000, ackMaxDelayMs: 600_000 };
    expect([1, 2, 3, 4, 5, 6, 7, 100].map((n) => resendDelay(n, b))).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000, 600_000]);
  });
});
