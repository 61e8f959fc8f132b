import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../agent/config/load.js';
import { MqttLink } from '../../agent/link/mqtt-link.js';
import { silentLogger } from '../../agent/log.js';
import { openStore, type Store } from '../../agent/store/index.js';
import { DEFAULT_STATUS_TOPIC, makeEnvelope, resourcePath, statusTopic, type StatusContent } from '../../shared/index.js';
import { statusTime } from '../../agent/reconcile/status-time.js';

// A node that speaks with the agent's real link and durable outbox (agent/link, agent/store),
// without the rest of the agent: tests and the controller benchmark make it report statuses and
// see them kept until the controller acks them, and sent again meanwhile.

export interface LinkNode {
  name: string;
  link: MqttLink;
  store: Store;
  /** Queues a status (ack requested); returns its msg_id. */
  report(s: Omit<StatusContent, 'node' | 'time'>): string;
  stop(): Promise<void>;
}

export function startLinkNode(opts: { node: string; brokerUrl: string; ackTimeoutMs?: number; ackMaxDelayMs?: number; dir?: string; noFsync?: boolean }): LinkNode {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'link-node-'));
  const config = parseConfig({
    node: { name: opts.node },
    broker: { url: opts.brokerUrl, reconnectMs: 200, reconnectMaxMs: 1000, ackTimeoutMs: opts.ackTimeoutMs ?? 300, ackMaxDelayMs: opts.ackMaxDelayMs ?? 2000 },
    stateDir: dir,
  });
  const store = openStore(join(dir, 'state.db'));
  // The benchmark runs dozens of nodes in one process: fsyncs there would stall its event loop
  // (and the fake API server in it), which is not what it measures.
  if (opts.noFsync) store.db.pragma('synchronous = OFF');
  const link = new MqttLink({ config, log: silentLogger(), outbox: store.outbox, agentVersion: 'test', onMessage: () => {} });
  link.start();
  return {
    name: opts.node,
    link,
    store,
    report(s) {
      const content: StatusContent = { node: opts.node, time: statusTime(), ...s };
      const env = makeEnvelope('status', content, { source: `modeld/${opts.node}`, resource: resourcePath(s.namespace, s.name), ack: true });
      link.enqueue(statusTopic(DEFAULT_STATUS_TOPIC, opts.node), JSON.stringify(env), { msgId: env.header.msg_id, key: `${s.namespace}/${s.name}` });
      return env.header.msg_id;
    },
    async stop() {
      await link.stop();
      store.close();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
