import type { StatusContent } from '../../shared/index.js';

// Pure: where one node is in the rollout to toVersion, from its latest report.

export type NodeState = 'serving' | 'failed' | 'deferred' | 'pending';

export function nodeState(r: StatusContent | undefined, toVersion: string | undefined): NodeState {
  if (!r) return 'pending';
  if (r.phase === 'Serving' && r.servingVersion === toVersion) return 'serving';
  if (r.phase === 'Failed' && (r.targetVersion === undefined || r.targetVersion === toVersion)) return 'failed';
  if (r.phase === 'Deferred') return 'deferred';
  return 'pending';
}
