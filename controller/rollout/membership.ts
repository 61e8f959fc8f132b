import { createHash } from 'node:crypto';
import type { RolloutSpec } from '../../shared/index.js';
import { matchesSelector } from '../placement.js';

// Pure and deterministic: which batch each target node is in, from the resource uid, the rollout
// and the node names only, so that a restarted controller or a new leader computes the same
// batches. Nodes are ordered by sha256(uid/node); canary nodes (selector, or the first count /
// percent of that order) come first.

export function amount(a: { count?: number; percent?: number } | undefined, total: number): number | undefined {
  if (!a) return undefined;
  if (a.count !== undefined) return a.count;
  if (a.percent !== undefined) return Math.ceil((total * a.percent) / 100);
  return undefined;
}

function hashOrder(uid: string, nodes: string[]): string[] {
  const keyed = nodes.map((n) => [createHash('sha256').update(`${uid}/${n}`).digest('hex'), n] as const);
  keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1));
  return keyed.map((k) => k[1]);
}

/** The batches, in order; every target node is in exactly one. */
export function rolloutBatches(uid: string, targets: string[], rollout: RolloutSpec, labelsOf: (node: string) => Record<string, string> | undefined = () => undefined): string[][] {
  const unique = [...new Set(targets)];
  const ordered = hashOrder(uid, unique);
  const total = ordered.length;
  let canary: string[] = [];
  let rest = ordered;
  if (rollout.canary?.selector) {
    const sel = rollout.canary.selector;
    canary = ordered.filter((n) => matchesSelector(labelsOf(n), sel));
    rest = ordered.filter((n) => !matchesSelector(labelsOf(n), sel));
  } else {
    const k = Math.min(total, amount(rollout.canary, total) ?? 0);
    if (rollout.canary && k === 0 && total > 0 && (rollout.canary.percent ?? 0) > 0) canary = ordered.slice(0, 1);
    else canary = ordered.slice(0, k);
    rest = ordered.slice(canary.length);
  }
  // maxUnavailable does not size batches: it caps the nodes updating at once within one (window.ts).
  const size = Math.max(1, amount(rollout.batch, total) ?? total);
  const batches: string[][] = canary.length ? [canary] : [];
  for (let i = 0; i < rest.length; i += size) batches.push(rest.slice(i, i + size));
  return batches;
}
