import mqtt, { type MqttClient } from 'mqtt';
import {
  DEFAULT_STATUS_TOPIC,
  DEFAULT_TOPIC_PREFIX,
  makeEnvelope,
  nodeFilter,
  parseMessage,
  presenceTopic,
  statusTopic,
  type Message,
  type ModelContent,
  type StatusContent,
} from '../../shared/index.js';
import { WAIT_MS } from '../helpers/wait.js';

// A FAKE node for controller tests and the benchmark: an MQTT client that keeps the set of specs
// it was sent (update/delete/sync applied in order) and can say hello and report status. It is
// not the agent; it only speaks the wire protocol.

export interface SimNodeOptions {
  node: string;
  brokerUrl: string;
  prefix?: string;
  statusTopic?: string;
  clean?: boolean;
}

export class SimNode {
  readonly name: string;
  readonly received: Message[] = [];
  /** resource key -> content, as the node would hold it */
  readonly held = new Map<string, ModelContent>();
  /** every key the node was ever told to hold (to catch specs not meant for it) */
  readonly everHeld = new Set<string>();
  client!: MqttClient;
  private readonly prefix: string;
  private readonly statusTemplate: string;
  private listeners: Array<() => void> = [];

  constructor(private readonly opts: SimNodeOptions) {
    this.name = opts.node;
    this.prefix = opts.prefix ?? DEFAULT_TOPIC_PREFIX;
    this.statusTemplate = opts.statusTopic ?? DEFAULT_STATUS_TOPIC;
  }

  async start(hello = true): Promise<this> {
    this.client = mqtt.connect(this.opts.brokerUrl, {
      clientId: `sim-${this.name}`,
      clean: this.opts.clean ?? false,
      reconnectPeriod: 200,
      will: { topic: presenceTopic(this.prefix, this.name), payload: Buffer.from(JSON.stringify({ state: 'offline', node: this.name })), qos: 1, retain: true },
    });
    this.client.on('message', (_topic, payload) => this.onMessage(payload));
    await new Promise<void>((resolve, reject) => {
      this.client.once('connect', () => resolve());
      this.client.once('error', reject);
    });
    await this.client.subscribeAsync(nodeFilter(this.prefix, this.name), { qos: 1 });
    if (hello) await this.hello();
    return this;
  }

  async hello(labels?: Record<string, string>): Promise<void> {
    await this.client.publishAsync(presenceTopic(this.prefix, this.name), JSON.stringify({ state: 'online', node: this.name }), { qos: 1, retain: true });
    const env = makeEnvelope('hello', { node: this.name, labels }, { source: this.name, resource: `${this.name}/inferencemodel/_hello` });
    await this.client.publishAsync(statusTopic(this.statusTemplate, this.name), JSON.stringify(env), { qos: 1 });
  }

  statusEnvelope(s: Partial<StatusContent> & { namespace: string; name: string; observedGeneration: number; phase: StatusContent['phase'] }, msgId?: string) {
    const content: StatusContent = { node: this.name, time: new Date().toISOString(), ...s };
    return makeEnvelope('status', content, { source: this.name, resource: `${s.namespace}/inferencemodel/${s.name}`, msgId });
  }

  async report(s: Parameters<SimNode['statusEnvelope']>[0], msgId?: string): Promise<void> {
    await this.client.publishAsync(statusTopic(this.statusTemplate, this.name), JSON.stringify(this.statusEnvelope(s, msgId)), { qos: 1 });
  }

  async publishRaw(payload: string | Buffer, topic = statusTopic(this.statusTemplate, this.name)): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 });
  }

  /** Resolves when the predicate holds (checked after every message), or rejects after timeoutMs. */
  waitFor(pred: (n: SimNode) => boolean, timeoutMs = WAIT_MS, what = 'condition'): Promise<void> {
    if (pred(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred(this)) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        reject(new Error(`${this.name}: timed out waiting for ${what}; holds [${[...this.held.keys()].join(', ')}]`));
      }, timeoutMs);
      this.listeners.push(check);
    });
  }

  generationOf(key: string): number | undefined {
    return this.held.get(key)?.metadata.generation;
  }

  async stop(): Promise<void> {
    await this.client?.endAsync(true);
  }

  private onMessage(payload: Buffer) {
    const r = parseMessage(payload);
    if (!r.ok) return;
    const m = r.message;
    this.received.push(m);
    const c = m.content as any;
    if (m.route.operation === 'update' || m.route.operation === 'insert') {
      const key = `${c.metadata.namespace}/${c.metadata.name}`;
      this.held.set(key, c);
      this.everHeld.add(key);
    } else if (m.route.operation === 'delete') {
      this.held.delete(`${c.metadata.namespace}/${c.metadata.name}`);
    } else if (m.route.operation === 'sync') {
      this.held.clear();
      for (const item of c.items) {
        const key = `${item.metadata.namespace}/${item.metadata.name}`;
        this.held.set(key, item);
        this.everHeld.add(key);
      }
    }
    for (const l of [...this.listeners]) l();
  }
}
