import type { InferenceModelSpec } from '../../shared/index.js';
import type { Config } from '../config/schema.js';

/** Whether a spec is meant for this node: its layer and every nodeSelector label must match. */
export function selectsNode(spec: InferenceModelSpec, node: Config['node']): { ok: true } | { ok: false; why: string } {
  if (spec.deployToLayer !== node.layer) return { ok: false, why: `deployToLayer is ${spec.deployToLayer}, this node is ${node.layer}` };
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) {
    if (node.labels[k] !== v) return { ok: false, why: `nodeSelector ${k}=${v} does not match (node has ${node.labels[k] ?? 'no such label'})` };
  }
  return { ok: true };
}
