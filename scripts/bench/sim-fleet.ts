import mqtt, { type MqttClient } from 'mqtt';
import { DEFAULT_EDGE_LABEL } from '../../controller/placement.js';
import { DEFAULT_TOPIC_PREFIX, nodeFilter } from '../../shared/index.js';
import { TYPES, type FakeKubeApi } from '../../test/fakes/kube-api/server.js';

// The simulated-node fleet of the controller benches: `count` MQTT clients in the bench process,
// node-<i>, each subscribed to its node topics. A node hands each spec of the one resource the
// bench watches to `onSpec`; everything else it ignores. Cheap checks, not the wire validation:
// the benches measure the controller, not zod.

/** A spec of the watched resource as a node gets it: alone (update) or within a sync. */
export interface FleetSpec {
  metadata: { namespace: string; name: string; generation?: number };
  spec: { targetVersion?: string };
}

export interface FleetOptions {
  brokerUrl: string;
  count: number;
  /** MQTT client ids are `<clientPrefix><node name>`. */
  clientPrefix: string;
  /** namespace/name of the resource the nodes watch. */
  key: string;
  onSpec(node: number, content: FleetSpec, sync: boolean, client: MqttClient): void;
}

/** The fleet's Node objects in the fake API server: node-<i>, each an edge node, with `labels(i)`. */
export function registerFleet(api: FakeKubeApi, count: number, labels: (i: number) => Record<string, string> = () => ({})): void {
  for (let i = 0; i < count; i++) api.create(TYPES.nodes, { metadata: { name: `node-${i}`, labels: { [DEFAULT_EDGE_LABEL]: '', ...labels(i) } } });
}

/** Connects the fleet, 100 nodes at a time (a thousand at once swamps the broker's accept queue). */
export async function connectFleet(opts: FleetOptions): Promise<MqttClient[]> {
  const clients: MqttClient[] = [];
  const mine = (c: FleetSpec) => `${c.metadata.namespace}/${c.metadata.name}` === opts.key;
  try {
    for (let start = 0; start < opts.count; start += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, opts.count - start) }, async (_, j) => {
          const i = start + j;
          const name = `node-${i}`;
          const c = mqtt.connect(opts.brokerUrl, { clientId: `${opts.clientPrefix}${name}`, clean: true, reconnectPeriod: 1000 });
          c.on('message', (_topic, payload) => {
            const m = JSON.parse(payload.toString());
            const op = m.route?.operation;
            if (op === 'update' && mine(m.content)) opts.onSpec(i, m.content, false, c);
            if (op === 'sync') for (const it of m.content.items) if (mine(it)) opts.onSpec(i, it, true, c);
          });
          await new Promise<void>((resolve, reject) => {
            c.once('connect', () => resolve());
            c.once('error', (err) => {
              c.end(true);
              reject(err);
            });
          });
          await c.subscribeAsync(nodeFilter(DEFAULT_TOPIC_PREFIX, name), { qos: 1 });
          clients[i] = c;
        }),
      );
    }
  } catch (err) {
    await endFleet(clients);
    throw err;
  }
  return clients;
}

/** Disconnects every node that got connected (a fleet cut short by an error included). */
export async function endFleet(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.filter(Boolean).map((c) => c.endAsync(true)));
}
