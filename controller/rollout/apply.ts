import { InferenceModelSpecSchema, type ModelContent, type StatusContent } from '../../shared/index.js';
import type { Desired } from '../desired.js';
import type { KubeObject } from '../kube/types.js';
import { objectKey } from '../kube/types.js';
import { rolloutBatches } from './membership.js';
import { rolloutRevision } from './revision.js';
import { nextDue, stepRollout, versionFor } from './step.js';
import { readRolloutStatus, type RolloutStatus } from './types.js';
import { batchWindow } from './window.js';

// Pure: staged rollouts over what computeDesired planned. For every resource with spec.rollout
// (agents only), the rollout's state now, and each target node's content with the version its
// batch allows. Resources without spec.rollout are left exactly as planned.

export interface RolloutInputs {
  models: Iterable<KubeObject>;
  labelsOf(node: string): Record<string, string> | undefined;
  reports(key: string): Map<string, StatusContent>;
  /** What this controller computed last (fresher than the cached status it wrote). */
  remembered(key: string): RolloutStatus | undefined;
  /** What a node was last sent, for unreached nodes when no earlier version is known. */
  lastSent(node: string, key: string): ModelContent | undefined;
  now: number;
}

export interface RolloutPlan {
  states: Map<string, RolloutStatus>;
  /** The state each was stepped from (remembered, else status.rollout): what its Events compare with. */
  previous: Map<string, RolloutStatus | undefined>;
  /** Earliest time a pause or deadline ends (ms), to look again then. */
  due?: number;
}

function fallbackFrom(model: KubeObject, reports: Map<string, StatusContent>): string | undefined {
  const serving = (model.status as { servingVersion?: unknown } | undefined)?.servingVersion;
  if (typeof serving === 'string') return serving;
  const counts = new Map<string, number>();
  for (const r of reports.values()) if (r.phase === 'Serving' && r.servingVersion) counts.set(r.servingVersion, (counts.get(r.servingVersion) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0];
}

export function applyRollouts(desired: Desired, i: RolloutInputs): RolloutPlan {
  const states = new Map<string, RolloutStatus>();
  const previous = new Map<string, RolloutStatus | undefined>();
  let due: number | undefined;
  for (const model of i.models) {
    const key = objectKey(model);
    const verdict = desired.verdicts.get(key);
    if (verdict?.kind !== 'agents' || !verdict.content.spec.rollout) continue;
    const parsed = InferenceModelSpecSchema.safeParse(model.spec);
    if (!parsed.success || !parsed.data.rollout) continue;
    const spec = parsed.data;
    const rollout = spec.rollout!;
    const uid = model.metadata.uid ?? key;
    const reports = i.reports(key);
    const batches = rolloutBatches(uid, verdict.targets, rollout, i.labelsOf);
    const remembered = i.remembered(key);
    const prev = remembered ?? readRolloutStatus((model.status as Record<string, unknown> | undefined)?.rollout);
    const state = stepRollout({ spec: rollout, revision: rolloutRevision(spec), toVersion: spec.targetVersion, batches, reports, prev, fallbackFrom: fallbackFrom(model, reports), now: i.now });
    states.set(key, state);
    previous.set(key, prev);
    const d = nextDue(state, rollout);
    if (d !== undefined) due = due === undefined ? d : Math.min(due, d);
    const { rollout: _steering, ...nodeSpec } = verdict.content.spec;
    const versions = new Set((spec.manifest ?? []).map((m) => m.version));
    const byVersion = new Map<string | undefined, ModelContent>();
    const contentFor = (v: string) => {
      let c = byVersion.get(v);
      if (!c) byVersion.set(v, (c = { metadata: verdict.content.metadata, spec: { ...nodeSpec, targetVersion: v } }));
      return c;
    };
    // The same window stepRollout recorded (batchReached already counts the nodes it let in).
    const current = state.batch - 1;
    const window = batchWindow({ members: batches[current] ?? [], reports, toVersion: state.toVersion, maxUnavailable: rollout.maxUnavailable, reachedBefore: state.batchReached, open: state.state !== 'Aborted' });
    let position = 0;
    batches.forEach((members, b) => {
      for (const node of members) {
        const set = desired.perNode.get(node);
        const at = position++;
        if (!set) continue;
        const v = versionFor(state, b, reports.get(node), versions, b !== current || window.reached.has(node), { node, position: at });
        if (v !== undefined) set.set(key, contentFor(v));
        else {
          const last = i.lastSent(node, key);
          if (last) set.set(key, last);
          else set.delete(key);
        }
        if (!set.size) desired.perNode.delete(node);
      }
    });
  }
  return { states, previous, due };
}
