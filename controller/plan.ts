import type { ModelContent, ObjectMeta } from '../shared/index.js';
import type { Desired } from './desired.js';

// Pure: desired (per node) against what each node was last sent -> the messages to send.
// A resource that is held back (invalid now) keeps whatever its nodes already have.

export type Send =
  | { op: 'update'; node: string; key: string; content: ModelContent }
  | { op: 'delete'; node: string; key: string; metadata: ObjectMeta }
  | { op: 'sync'; node: string; items: Map<string, ModelContent> };

/** node -> resource key -> the content that node was last sent. */
export type Sent = Map<string, Map<string, ModelContent>>;

export function sameSpec(a: ModelContent, b: ModelContent): boolean {
  if (a.metadata.uid !== b.metadata.uid) return false;
  // A staged rollout sends one generation with different versions as its batches advance.
  if (a.spec.targetVersion !== b.spec.targetVersion) return false;
  if (a.metadata.generation !== undefined && b.metadata.generation !== undefined) return a.metadata.generation === b.metadata.generation;
  return a.metadata.resourceVersion === b.metadata.resourceVersion;
}

export function heldKeys(desired: Desired): Set<string> {
  const held = new Set<string>();
  for (const [key, v] of desired.verdicts) if (v.kind === 'invalid') held.add(key);
  return held;
}

export function planSends(desired: Desired, sent: Sent, syncNodes: Iterable<string>): Send[] {
  const held = heldKeys(desired);
  const sends: Send[] = [];
  const synced = new Set<string>();
  for (const node of syncNodes) {
    if (synced.has(node)) continue;
    synced.add(node);
    const items = new Map(desired.perNode.get(node) ?? []);
    for (const [key, content] of sent.get(node) ?? []) if (held.has(key) && !items.has(key)) items.set(key, content);
    sends.push({ op: 'sync', node, items });
  }
  for (const [node, wanted] of desired.perNode) {
    if (synced.has(node)) continue;
    const had = sent.get(node);
    for (const [key, content] of wanted) {
      const prev = had?.get(key);
      if (!prev || !sameSpec(prev, content)) sends.push({ op: 'update', node, key, content });
    }
  }
  for (const [node, had] of sent) {
    if (synced.has(node)) continue;
    const wanted = desired.perNode.get(node);
    for (const [key, content] of had) {
      if (wanted?.has(key) || held.has(key)) continue;
      sends.push({ op: 'delete', node, key, metadata: content.metadata });
    }
  }
  return sends;
}

/** Records a send that went out. */
export function recordSent(sent: Sent, s: Send): void {
  if (s.op === 'sync') {
    if (s.items.size) sent.set(s.node, new Map(s.items));
    else sent.delete(s.node);
    return;
  }
  let had = sent.get(s.node);
  if (s.op === 'update') {
    if (!had) sent.set(s.node, (had = new Map()));
    had.set(s.key, s.content);
  } else if (had) {
    had.delete(s.key);
    if (!had.size) sent.delete(s.node);
  }
}
