import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { NodeMessages } from '../../controller/inbound.js';
import { createMetrics } from '../../controller/metrics.js';
import { AckSender, PendingAcks } from '../../controller/status/acks.js';
import { StatusIntake } from '../../controller/status/intake.js';
import type { Transport } from '../../controller/transport/types.js';
import { Sequencer } from '../../controller/sequence.js';
import { makeEnvelope, type StatusContent } from '../../shared/index.js';

// The inbound job alone, with the real intake, pending acks and ack sender and a transport that
// records what it publishes.

function setUp() {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(...c.toString().split('\n').filter(Boolean)), cb()) }));
  const published: Array<{ topic: string; body: any }> = [];
  const transport: Transport = { name: 'kubeedge', start: async () => {}, stop: async () => {}, connected: () => true, publish: async (_n, topic, payload) => void published.push({ topic, body: JSON.parse(payload) }) };
  const pending = new PendingAcks();
  const scheduled: string[] = [];
  const acks = new AckSender({ transport, topicPrefix: 'ai/inferencemodel', source: 'test', sequencer: new Sequencer(), schedule: (n) => scheduled.push(n) });
  const metrics = createMetrics();
  const accepted: string[] = [];
  const inbound = new NodeMessages({
    topicPrefix: 'ai/inferencemodel',
    statusTopic: 'default/ai/inferencemodel-status/{node}',
    log,
    metrics,
    events: { warning: async () => {} } as never,
    intake: new StatusIntake(),
    pending,
    acks,
    model: (key) => (key === 'default/m' ? { metadata: { name: 'm', namespace: 'default', uid: 'u1' } } : undefined),
    node: (name) => (name === 'n1' ? { metadata: { name } } : undefined),
    onAgent: () => {},
    onAccepted: (key) => accepted.push(key),
  });
  const status = (s: Partial<StatusContent> & { name: string }, ack = true) =>
    Buffer.from(JSON.stringify(makeEnvelope('status', { node: 'n1', namespace: 'default', observedGeneration: 1, phase: 'Serving', time: new Date().toISOString(), ...s }, { source: 'n1', resource: `default/inferencemodel/${s.name}`, ack })));
  return { inbound, lines, published, pending, acks, scheduled, metrics, accepted, status };
}

describe('inbound node messages', () => {
  it('acks an accepted status only with its write, and a discarded one at once', async () => {
    const t = setUp();
    const first = t.status({ name: 'm' });
    const id = JSON.parse(first.toString()).header.msg_id;
    t.inbound.handle({ payload: first });
    expect(t.accepted).toEqual(['default/m']);
    expect(t.pending.has(id)).toBe(true);
    expect(t.scheduled).toEqual([]);
    // The same message again while its write is pending: acked with that write, not now.
    t.inbound.handle({ payload: first });
    expect(t.scheduled).toEqual([]);
    // A status that did not ask for an ack (an older agent) gets none.
    t.inbound.handle({ payload: t.status({ name: 'usbfile' }, false) });
    expect(t.scheduled).toEqual([]);
    // A locally applied model: acked at once.
    t.inbound.handle({ payload: t.status({ name: 'usbfile' }) });
    expect(t.scheduled).toEqual(['n1']);
    await t.acks.flush('n1');
    expect(t.published).toHaveLength(1);
    expect(t.published[0].topic).toBe('ai/inferencemodel/n1/_ack');
    expect(t.published[0].body.route.operation).toBe('ack');
  });

  it('counts statuses of locally applied models and logs them once per model, not per message', async () => {
    const t = setUp();
    for (let i = 0; i < 5; i++) t.inbound.handle({ payload: t.status({ name: 'usbfile' }) });
    t.inbound.handle({ payload: t.status({ name: 'other-local' }) });
    expect(t.inbound.stats.localModelStatuses).toBe(6);
    expect((await t.metrics.localModelStatuses.get()).values[0].value).toBe(6);
    const logged = t.lines.map((l) => JSON.parse(l)).filter((r) => /no InferenceModel/.test(r.msg));
    expect(logged.map((r) => r.model)).toEqual(['default/usbfile', 'default/other-local']);
    expect(t.lines.some((l) => /message from a node dropped/.test(l))).toBe(false);
  });
});
