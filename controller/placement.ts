import type { DeployLayer } from '../shared/index.js';
import type { KubeObject } from './kube/types.js';

// Which Nodes a resource targets: labels match nodeSelector, and the layer matches deployToLayer
// (edge nodes carry the edge label, KubeEdge's node-role.kubernetes.io/edge by default; cloud
// nodes are the ones without it).

export const DEFAULT_EDGE_LABEL = 'node-role.kubernetes.io/edge';

export function nodeLayer(node: KubeObject, edgeLabel: string): DeployLayer {
  return Object.hasOwn(node.metadata.labels ?? {}, edgeLabel) ? 'edge' : 'cloud';
}

export function matchesSelector(labels: Record<string, string> | undefined, selector: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if ((labels ?? {})[k] !== v) return false;
  return true;
}

export function isTarget(
  node: KubeObject,
  spec: { deployToLayer: DeployLayer; nodeSelector?: Record<string, string> },
  edgeLabel: string,
): boolean {
  if (node.metadata.deletionTimestamp) return false;
  return nodeLayer(node, edgeLabel) === spec.deployToLayer && matchesSelector(node.metadata.labels, spec.nodeSelector);
}

export function targetNodes(
  nodes: Iterable<KubeObject>,
  spec: { deployToLayer: DeployLayer; nodeSelector?: Record<string, string> },
  edgeLabel: string,
): string[] {
  const out: string[] = [];
  for (const n of nodes) if (isTarget(n, spec, edgeLabel)) out.push(n.metadata.name);
  return out.sort();
}
