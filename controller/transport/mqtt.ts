import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
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
  log: Logger;
}

export function mqttTransport(opts: MqttTransportOptions): Transport {
  let client: MqttClient | undefined;
  return {
    name: 'mqtt',
    async start(onMessage: (m: Inbound) => void) {
      const c = mqtt.connect(opts.brokerUrl, {
        clientId: opts.clientId,
        clean: false,
        username: opts.username,
        password: opts.password,
        reconnectPeriod: 1000,
        connectTimeout: 10_000,
        resubscribe: false,
      });
      client = c;
      const filters = { [statusFilter(opts.statusTopic)]: { qos: 1 as const }, [allPresenceFilter(opts.topicPrefix)]: { qos: 1 as const } };
      // One warning per outage, not one per reconnect attempt (once a second while it lasts).
      let down = false;
      c.on('connect', () => {
        down = false;
        opts.log.info({ broker: opts.brokerUrl }, 'connected to broker');
        // Subscribe on every connect: a broker that lost our session forgot the subscriptions.
        c.subscribe(filters, (err) => err && opts.log.warn({ err: err.message }, 'subscribe failed'));
      });
      c.on('error', (err) => {
        opts.log[down ? 'debug' : 'warn']({ err: err.message, broker: opts.brokerUrl }, 'broker error; reconnecting (further errors of this outage at debug level)');
        down = true;
      });
      c.on('offline', () => {
        if (!down) opts.log.warn({ broker: opts.brokerUrl }, 'broker offline; reconnecting');
        down = true;
      });
      c.on('message', (topic, payload) => onMessage({ topic, payload }));
      // Up to 5 s for the first connect. Not connecting is not fatal: publishes queue and go out on connect.
      if (!c.connected) {
        const connected = new AbortController();
        c.once('connect', () => connected.abort());
        await sleep(5000, connected.signal, { unref: true });
      }
    },
    async publish(_node, topic, payload) {
      if (!client) throw new Error('mqtt transport not started');
      // Not waiting for PUBACK: the client owns the message now and retries it across reconnects.
      client.publish(topic, payload, { qos: 1 }, (err) => err && opts.log.warn({ topic, err: err.message }, 'publish failed'));
    },
    connected: () => !!client?.connected,
    async stop() {
      await client?.endAsync();
      client = undefined;
    },
  };
}
