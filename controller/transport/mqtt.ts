import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { brokerRefusal, type RefusalSettings } from '../../shared/broker-refusal.js';
import { allPresenceFilter, statusFilter } from '../../shared/index.js';
import { sleep } from '../../shared/sleep.js';
import type { Inbound, Transport } from './types.js';

// Publish/subscribe on one broker (nodes on a shared broker, or edge brokers bridged to it).
// QoS 1 and a persistent session: while the broker is away, mqtt.js keeps QoS 1 publishes and
// sends them after reconnecting, and the broker keeps status messages for our session.

export interface MqttTransportOptions {
  brokerUrl: string;
  clientId: string;
  topicPrefix: string;
  statusTopic: string;
  username?: string;
  password?: string;
  /** PEM contents (read from files by broker-files.ts): the CA the broker is verified with, and a client certificate for mutual TLS. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** First reconnect delay, doubling after each failed attempt up to reconnectMaxMs (defaults 1 s, 30 s). */
  reconnectMs?: number;
  reconnectMaxMs?: number;
  log: Logger;
}

const CONTROLLER_SETTINGS: RefusalSettings = {
  self: 'controller',
  ca: '--broker-ca',
  clientCert: '--broker-cert and --broker-key',
  credentials: '--broker-username, --broker-password-file',
  url: '--broker-url',
};

export function mqttTransport(opts: MqttTransportOptions): Transport {
  let client: MqttClient | undefined;
  // Why the broker is out of reach, for /healthz; cleared on connect.
  let problem: string | undefined;
  const minDelay = opts.reconnectMs ?? 1000;
  const maxDelay = Math.max(minDelay, opts.reconnectMaxMs ?? 30_000);
  return {
    name: 'mqtt',
    async start(onMessage: (m: Inbound) => void) {
      const connectOpts: IClientOptions = {
        clientId: opts.clientId,
        clean: false,
        username: opts.username,
        password: opts.password,
        reconnectPeriod: minDelay,
        connectTimeout: 10_000,
        resubscribe: false,
        ...opts.tls,
      };
      const c = mqtt.connect(opts.brokerUrl, connectOpts);
      client = c;
      const filters = { [statusFilter(opts.statusTopic)]: { qos: 1 as const }, [allPresenceFilter(opts.topicPrefix)]: { qos: 1 as const } };
      // One warning per outage, not one per reconnect attempt; attempts back off from
      // reconnectMs, doubling up to reconnectMaxMs (mqtt.js reads reconnectPeriod each time).
      let down = false;
      c.on('reconnect', () => {
        opts.log.debug({ broker: opts.brokerUrl, delayMs: c.options.reconnectPeriod }, 'reconnecting to broker');
        c.options.reconnectPeriod = Math.min(maxDelay, (c.options.reconnectPeriod ?? minDelay) * 2);
      });
      c.on('connect', () => {
        down = false;
        problem = undefined;
        c.options.reconnectPeriod = minDelay;
        opts.log.info({ broker: opts.brokerUrl }, 'connected to broker');
        // Subscribe on every connect: a broker that lost our session forgot the subscriptions.
        c.subscribe(filters, (err) => err && opts.log.warn({ err: err.message }, 'subscribe failed'));
      });
      c.on('error', (err) => {
        problem = brokerRefusal(err, opts.brokerUrl, CONTROLLER_SETTINGS);
        opts.log[down ? 'debug' : 'warn']({ reason: problem, err: err.message, broker: opts.brokerUrl }, 'broker error; reconnecting (further errors of this outage at debug level)');
        down = true;
      });
      c.on('offline', () => {
        if (!down) opts.log.warn({ broker: opts.brokerUrl }, 'broker offline; reconnecting');
        down = true;
      });
      c.on('message', (topic, payload) => onMessage({ topic, payload }));
      // Up to 5 s for the first connect, less if it is refused. Not connecting is not fatal:
      // publishes queue and go out on connect.
      if (!c.connected) {
        const settled = new AbortController();
        c.once('connect', () => settled.abort());
        c.once('error', () => settled.abort());
        await sleep(5000, settled.signal, { unref: true });
      }
    },
    async publish(_node, topic, payload) {
      if (!client) throw new Error('mqtt transport not started');
      // Not waiting for PUBACK: the client owns the message now and retries it across reconnects.
      client.publish(topic, payload, { qos: 1 }, (err) => err && opts.log.warn({ topic, err: err.message }, 'publish failed'));
    },
    connected: () => !!client?.connected,
    problem: () => (client?.connected ? undefined : problem),
    async stop() {
      await client?.endAsync();
      client = undefined;
    },
  };
}
