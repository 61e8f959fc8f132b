import type { InferenceModelSpec } from '../../shared/index.js';
import type { Config } from '../config/schema.js';

/**
 * Whether a spec is meant for this node: its layer must match, and, when the node's config lists
 * labels, every nodeSelector label too. With no labels configured the node trusts the controller's
 * placement (it matched the Kubernetes Node's labels, and the topic names this node), so operators
 * need not copy every Node label into the agent's config.
 */
export function selectsNode(spec: InferenceModelSpec, node: Config['node']): { ok: true } | { ok: false; why: string } {
  if (spec.deployToLayer !== node.layer) return { ok: false, why: `deployToLayer is ${spec.deployToLayer}, this node is ${node.layer}` };
  if (Object.keys(node.labels).length === 0) return { ok: true };
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) {
    if (node.labels[k] !== v) return { ok: false, why: `nodeSelector ${k}=${v} does not match (node has ${node.labels[k] ?? 'no such label'})` };
  }
  return { ok: true };
}
