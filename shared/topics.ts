// Topic builders and parsers for both ends. The node is inside every topic so the same scheme
// works on a node's own broker (KubeEdge Router) and on one broker shared by many nodes.

export const DEFAULT_TOPIC_PREFIX = 'ai/inferencemodel';
export const DEFAULT_STATUS_TOPIC = 'default/ai/inferencemodel-status/{node}';

export const specTopic = (prefix: string, node: string, namespace: string, name: string) =>
  `${prefix}/${node}/${namespace}/${name}`;
export const syncTopic = (prefix: string, node: string) => `${prefix}/${node}/_sync`;
export const presenceTopic = (prefix: string, node: string) => `${prefix}/${node}/_agent`;
/** Acks of the node's statuses (cloud -> node), under the same prefix so the same Router Rule carries them. */
export const ackTopic = (prefix: string, node: string) => `${prefix}/${node}/_ack`;
/** Everything meant for one node (the agent's one subscription). */
export const nodeFilter = (prefix: string, node: string) => `${prefix}/${node}/#`;
/** Presence of every node (the controller's subscription). */
export const allPresenceFilter = (prefix: string) => `${prefix}/+/_agent`;

/** The status topic template with `{node}` filled in. */
export const statusTopic = (template: string, node: string) => template.replaceAll('{node}', node);
/** The status topic of every node, as an MQTT filter (`{node}` -> `+`). */
export const statusFilter = (template: string) => template.replaceAll('{node}', '+');

export type ParsedTopic =
  | { kind: 'spec'; node: string; namespace: string; name: string }
  | { kind: 'sync'; node: string }
  | { kind: 'presence'; node: string }
  | { kind: 'ack'; node: string };

/** Parses a topic under the prefix; undefined for anything else. */
export function parseTopic(prefix: string, topic: string): ParsedTopic | undefined {
  if (!topic.startsWith(prefix + '/')) return undefined;
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.some((p) => p === '')) return undefined;
  if (parts.length === 2 && parts[1] === '_sync') return { kind: 'sync', node: parts[0] };
  if (parts.length === 2 && parts[1] === '_agent') return { kind: 'presence', node: parts[0] };
  if (parts.length === 2 && parts[1] === '_ack') return { kind: 'ack', node: parts[0] };
  if (parts.length === 3 && !parts[1].startsWith('_')) {
    return { kind: 'spec', node: parts[0], namespace: parts[1], name: parts[2] };
  }
  return undefined;
}

/** The node a status topic belongs to, given the template; undefined when it does not match. */
export function parseStatusTopic(template: string, topic: string): string | undefined {
  const [before, after = ''] = template.split('{node}');
  if (!topic.startsWith(before) || !topic.endsWith(after)) return undefined;
  const node = topic.slice(before.length, topic.length - after.length);
  return node && !node.includes('/') ? node : undefined;
}
