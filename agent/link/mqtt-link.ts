import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { ackTopic, makeEnvelope, nodeFilter, parseMessage, presenceTopic, statusTopic, type AckContent, type HelloContent } from '../../shared/index.js';
import { verifyEnvelope } from '../../shared/signing.js';
import { sleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutboxAddOptions, OutboxTable } from '../store/outbox.js';
import { brokerRefusal, type RefusalSettings } from '../../shared/broker-refusal.js';
import { HelloNonce } from './hello-nonce.js';
import { presencePayload } from './presence.js';
import { resendDelay } from './resend-delay.js';

/** A TLS file named in the config; one that cannot be read is a config error (exit 78), said with its key. */
function readTlsFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ModeldError('ConfigInvalid', `${key}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

export interface LinkDeps {
  config: Config;
  log: Logger;
  outbox: OutboxTable;
  agentVersion: string;
  /** Every message that arrives on the node's topics. Must not throw. */
  onMessage: (topic: string, payload: Buffer) => void;
  onConnectionChange?: (connected: boolean) => void;
  /** keyId -> trusted key: acks must be signed too (security.trustedKeys). */
  trusted?: ReadonlyMap<string, KeyObject>;
  /** The highest header.sequence accepted (durable), said in each hello. */
  lastSequence?: () => number | undefined;
  /** Each connect's hello gets a fresh nonce here (intake checks the sync's echo against it). */
  hello?: HelloNonce;
}

const AGENT_SETTINGS: RefusalSettings = { self: 'node', ca: 'broker.tls.ca', clientCert: 'broker.tls.cert and broker.tls.key', credentials: 'broker.username, broker.password', url: 'broker.url' };

// How many outbox entries are in flight at once. mqtt.js sends them in order on one connection,
// so a window keeps order while not paying one round trip per status.
const WINDOW = 32;

/**
 * The node's MQTT link: QoS 1, persistent session, re-subscribe on every connect, retained
 * presence with an `offline` last will, a `hello` after each connect, and a durable outbox:
 * a message is in SQLite before it is published. One without a msg_id leaves once the broker
 * acked it; a status leaves only once the controller acks its msg_id on `<prefix>/<node>/_ack`,
 * and is published again after `broker.ackTimeoutMs`, doubling up to `broker.ackMaxDelayMs`,
 * while no ack comes (an old controller never acks: a bounded trickle, one per model).
 */
export class MqttLink {
  private client?: MqttClient;
  private flushing = false;
  private stopped = false;
  private resendTimer: NodeJS.Timeout | undefined;
  private readonly node: string;
  private readonly prefix: string;

  constructor(private readonly deps: LinkDeps) {
    this.node = deps.config.node.name;
    this.prefix = deps.config.topics.prefix;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Connects in the background: the agent runs (and serves) without a broker. */
  start(): void {
    const { config, log } = this.deps;
    const b = config.broker;
    const opts: IClientOptions = {
      clientId: b.clientId ?? `modeld-${this.node}`,
      clean: false,
      keepalive: b.keepaliveSec,
      reconnectPeriod: b.reconnectMs,
      connectTimeout: 10_000,
      username: b.username,
      password: b.password,
      resubscribe: false, // we subscribe on every connect ourselves
      queueQoSZero: false,
      will: {
        topic: presenceTopic(this.prefix, this.node),
        payload: Buffer.from(presencePayload('offline', this.node, this.deps.agentVersion)),
        qos: 1,
        retain: true,
      },
    };
    if (b.tls.ca) opts.ca = readTlsFile('broker.tls.ca', b.tls.ca);
    if (b.tls.cert) opts.cert = readTlsFile('broker.tls.cert', b.tls.cert);
    if (b.tls.key) opts.key = readTlsFile('broker.tls.key', b.tls.key);
    opts.rejectUnauthorized = b.tls.rejectUnauthorized;
    const url = b.url.replace(/^tcp:/, 'mqtt:').replace(/^ssl:/, 'mqtts:');

    const client = mqtt.connect(url, opts);
    this.client = client;
    // One warning per outage and reason, not one per reconnect attempt: a node may be offline
    // for days. Attempts back off from reconnectMs, doubling up to reconnectMaxMs (mqtt.js reads
    // options.reconnectPeriod each time it schedules one).
    let warned = false;
    let refusedFor: string | undefined;
    client.on('reconnect', () => {
      log.debug({ broker: url, delayMs: client.options.reconnectPeriod }, 'reconnecting to broker');
      client.options.reconnectPeriod = Math.max(b.reconnectMs, Math.min(b.reconnectMaxMs, (client.options.reconnectPeriod ?? b.reconnectMs) * 2));
    });
    client.on('connect', () => {
      warned = false;
      refusedFor = undefined;
      client.options.reconnectPeriod = b.reconnectMs;
      log.info({ broker: url }, 'connected to broker');
      this.deps.onConnectionChange?.(true);
      void this.onConnect(client);
    });
    client.on('close', () => this.deps.onConnectionChange?.(false));
    client.on('offline', () => {
      if (!warned) log.warn({ broker: url }, 'broker unreachable; serving from local state, statuses kept in the outbox');
      warned = true;
    });
    client.on('error', (err) => {
      const reason = brokerRefusal(err, url, AGENT_SETTINGS);
      if (reason === refusedFor) return log.debug({ err: err.message, broker: url }, 'broker connection error');
      refusedFor = reason;
      log.warn({ reason, err: err.message, broker: url }, 'broker connection refused');
    });
    client.on('message', (topic, payload) => {
      if (topic === presenceTopic(this.prefix, this.node)) return; // our own presence echo
      if (topic === ackTopic(this.prefix, this.node)) return this.onAck(payload);
      this.deps.onMessage(topic, payload);
    });
  }

  private async onConnect(client: MqttClient): Promise<void> {
    try {
      await client.subscribeAsync(nodeFilter(this.prefix, this.node), { qos: 1 });
      await client.publishAsync(presenceTopic(this.prefix, this.node), presencePayload('online', this.node, this.deps.agentVersion), {
        qos: 1,
        retain: true,
      });
      const hello: HelloContent = {
        node: this.node,
        layer: this.deps.config.node.layer,
        labels: this.deps.config.node.labels,
        agentVersion: this.deps.agentVersion,
        nonce: (this.deps.hello ??= new HelloNonce()).next(),
      };
      const lastSequence = this.deps.lastSequence?.();
      if (lastSequence !== undefined) hello.lastSequence = lastSequence;
      const env = makeEnvelope('hello', hello, { source: `modeld/${this.node}`, resource: `node/${this.node}` });
      await client.publishAsync(statusTopic(this.deps.config.topics.status, this.node), JSON.stringify(env), { qos: 1 });
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'subscribe/announce failed; will retry on reconnect');
      return;
    }
    this.kick();
  }

  /** Writes a message to the outbox (durable), then publishes it when the broker is there. */
  enqueue(topic: string, payload: string, opts: OutboxAddOptions = {}): void {
    this.deps.outbox.add(topic, payload, opts);
    this.kick();
  }

  /** The controller folded these statuses into their resources: they leave the outbox. */
  private onAck(payload: Buffer): void {
    const trusted = this.deps.trusted;
    if (trusted?.size && payload.length <= this.deps.config.limits.messageBytes) {
      let raw: unknown;
      try {
        raw = JSON.parse(payload.toString());
      } catch {
        raw = undefined; // parseMessage below says why
      }
      const out = raw === undefined ? undefined : verifyEnvelope(raw, this.node, trusted);
      if (out && !out.ok) {
        this.deps.log.warn({ topic: ackTopic(this.prefix, this.node), reason: out.reason }, `ack refused: ${out.message}`);
        return;
      }
    }
    const parsed = parseMessage(payload, this.deps.config.limits.messageBytes);
    const content = parsed.ok && parsed.message.route.operation === 'ack' ? (parsed.message.content as AckContent) : undefined;
    if (!content || content.node !== this.node) {
      const why = !parsed.ok ? `${parsed.reason}: ${parsed.message}` : content ? `for node ${content.node}` : `operation ${parsed.message.route.operation}`;
      this.deps.log.warn({ topic: ackTopic(this.prefix, this.node), reason: 'BadMessage' }, `ack ignored: ${why}`);
      return;
    }
    const forgotten = this.deps.outbox.ack(content.msgIds);
    this.deps.log.debug({ acked: content.msgIds.length, forgotten }, 'statuses acked by the controller');
  }

  /** Wakes the flush when the earliest entry waiting for an ack falls due. */
  private scheduleResend(): void {
    clearTimeout(this.resendTimer);
    const next = this.deps.outbox.nextDue();
    if (next === undefined || this.stopped) return;
    this.resendTimer = setTimeout(() => this.kick(), Math.max(0, next - Date.now()));
    this.resendTimer.unref();
  }

  /** Publishes the outbox in order until it is empty or the link drops. */
  kick(): void {
    if (this.flushing || this.stopped) return;
    this.flushing = true;
    void this.flush().finally(() => {
      this.flushing = false;
    });
  }

  private async flush(): Promise<void> {
    const { outbox, log } = this.deps;
    for (;;) {
      const client = this.client;
      if (!client?.connected || this.stopped) return;
      const batch = outbox.due(WINDOW);
      if (batch.length === 0) return this.scheduleResend();
      try {
        // Published in order; each resolves on its PUBACK.
        const acks = batch.map((e) => client.publishAsync(e.topic, e.payload, { qos: 1, retain: e.retain }));
        for (let i = 0; i < batch.length; i++) {
          await acks[i];
          const e = batch[i];
          if (e.msgId) outbox.published(e.seq, e.attempts + 1, Date.now() + resendDelay(e.attempts + 1, this.deps.config.broker));
          else outbox.remove(e.seq);
        }
      } catch (err) {
        // Left in the outbox; the next connect flushes again (at least once, receivers dedupe by msg_id).
        log.debug({ err: (err as Error).message }, 'outbox publish interrupted');
        return;
      }
    }
  }

  /** Graceful stop: retained `offline`, then disconnect. The outbox keeps what was not sent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.resendTimer);
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      // Up to 2 s for the PUBACK; the wait ends (its timer cleared) as soon as it comes.
      const acked = new AbortController();
      client
        .publishAsync(presenceTopic(this.prefix, this.node), presencePayload('offline', this.node, this.deps.agentVersion), { qos: 1, retain: true })
        .catch(() => {})
        .finally(() => acked.abort());
      await sleep(2000, acked.signal);
    }
    await client.endAsync(true).catch(() => {});
  }
}
