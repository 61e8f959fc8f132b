import mqtt, { type MqttClient } from 'mqtt';
import { ackTopic, makeEnvelope, resourcePath, specTopic, syncTopic, type ModelContent, type StatusContent } from '../../shared/index.js';
import { WAIT_MS, waitFor } from './wait.js';

// The controller's side of the wire, for tests: publishes specs exactly as the controller does,
// records every status the nodes send and, as the controller does, acks the ones that ask for it
// (`ack: false` plays an old controller that never acks).

export interface Cloud {
  client: MqttClient;
  statuses: StatusContent[];
  /** Envelope headers of the statuses, in arrival order (msg_id, parent_msg_id). */
  headers: Array<{ msg_id: string; parent_msg_id: string }>;
  /** Nodes that said hello (subscribed and ready for specs), in order. */
  hellos: string[];
  update(node: string, content: ModelContent): Promise<string>;
  remove(node: string, namespace: string, name: string): Promise<void>;
  sync(node: string, items: ModelContent[]): Promise<void>;
  /** Waits for a status matching `pred` (after index `from`); returns it. */
  waitStatus(pred: (s: StatusContent) => boolean, opts?: { timeoutMs?: number; from?: number; what?: string }): Promise<StatusContent>;
  close(): Promise<void>;
}

export async function connectCloud(
  brokerUrl: string,
  statusFilter = 'default/ai/inferencemodel-status/+',
  prefix = 'ai/inferencemodel',
  /** A persistent session (clean: false): with a persistent broker, nothing sent while it reconnects is lost. */
  opts: { persistent?: boolean; ack?: boolean } = {},
): Promise<Cloud> {
  const client = await mqtt.connectAsync(brokerUrl, { clientId: `cloud-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 200, clean: !opts.persistent });
  const statuses: StatusContent[] = [];
  const headers: Cloud['headers'] = [];
  const hellos: string[] = [];
  client.on('message', (_t, payload) => {
    try {
      const msg = JSON.parse(payload.toString());
      if (msg.route?.operation === 'hello') hellos.push(msg.content.node);
      if (msg.route?.operation !== 'status') return;
      statuses.push(msg.content);
      headers.push(msg.header);
      if (msg.header?.ack && opts.ack !== false) {
        const ack = makeEnvelope('ack', { node: msg.content.node, msgIds: [msg.header.msg_id] }, { source: 'modeld-controller', resource: `node/${msg.content.node}` });
        void client.publishAsync(ackTopic(prefix, msg.content.node), JSON.stringify(ack), { qos: 1 }).catch(() => {});
      }
    } catch {
      // not ours
    }
  });
  await client.subscribeAsync(statusFilter, { qos: 1 });
  const publish = (topic: string, body: unknown) => client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
  return {
    client,
    statuses,
    headers,
    hellos,
    async update(node, content) {
      const env = makeEnvelope('update', content, { source: 'modeld-controller', resource: resourcePath(content.metadata.namespace, content.metadata.name) });
      await publish(specTopic(prefix, node, content.metadata.namespace, content.metadata.name), env);
      return env.header.msg_id;
    },
    async remove(node, namespace, name) {
      const env = makeEnvelope('delete', { metadata: { namespace, name } }, { source: 'modeld-controller', resource: resourcePath(namespace, name) });
      await publish(specTopic(prefix, node, namespace, name), env);
    },
    async sync(node, items) {
      const env = makeEnvelope('sync', { node, items, nodeKnown: true }, { source: 'modeld-controller', resource: `node/${node}` });
      await publish(syncTopic(prefix, node), env);
    },
    async waitStatus(pred, opts = {}) {
      let found: StatusContent | undefined;
      const recent = () => statuses.slice(-8).map((s) => `${s.name} gen=${s.observedGeneration} ${s.phase} ${s.reason ?? ''} serving=${s.servingVersion ?? '-'}`).join('; ');
      await waitFor(() => (found = statuses.slice(opts.from ?? 0).find(pred)) !== undefined, opts.timeoutMs ?? WAIT_MS, opts.what ?? 'a status').catch((err: Error) => {
        throw new Error(`${err.message}; last statuses: ${recent()}`);
      });
      return found!;
    },
    close: () => client.endAsync(true),
  };
}
