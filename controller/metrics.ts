import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

// The controller's Prometheus metrics, on a registry of its own (no module singleton).

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'modeld_controller_' });
  const m = {
    registry,
    messagesSent: new Counter({ name: 'modeld_controller_messages_sent_total', help: 'Messages sent to nodes, by operation', labelNames: ['operation'], registers: [registry] }),
    sendFailures: new Counter({ name: 'modeld_controller_send_failures_total', help: 'Messages that could not be handed to the transport', labelNames: ['operation'], registers: [registry] }),
    inbound: new Counter({ name: 'modeld_controller_inbound_total', help: 'Messages received from nodes, by result', labelNames: ['result'], registers: [registry] }),
    statusWrites: new Counter({ name: 'modeld_controller_status_writes_total', help: 'Status subresource writes, by result', labelNames: ['result'], registers: [registry] }),
    watchRestarts: new Counter({ name: 'modeld_controller_watch_restarts_total', help: 'Watch restarts, by resource and reason', labelNames: ['resource', 'reason'], registers: [registry] }),
    leader: new Gauge({ name: 'modeld_controller_leader', help: '1 while this replica leads', registers: [registry] }),
    models: new Gauge({ name: 'modeld_controller_models', help: 'InferenceModel resources known', registers: [registry] }),
    nodes: new Gauge({ name: 'modeld_controller_nodes', help: 'Nodes known', registers: [registry] }),
    localModelStatuses: new Counter({ name: 'modeld_controller_local_model_statuses_total', help: 'Statuses of models applied locally on a node (no InferenceModel in the cluster): acked, not kept', registers: [registry] }),
    acksSent: new Counter({ name: 'modeld_controller_acks_sent_total', help: 'Status msg_ids acked back to nodes', registers: [registry] }),
    unreachableNodes: new Gauge({ name: 'modeld_controller_unreachable_nodes', help: 'Nodes the transport cannot reach now (the Router has no session for them)', registers: [registry] }),
    retries: new Counter({ name: 'modeld_controller_retries_total', help: 'Work queue keys retried after a failure, by job (node, image, ack)', labelNames: ['job'], registers: [registry] }),
  };
  return m;
}
export type Metrics = ReturnType<typeof createMetrics>;
