import { InferenceModelSpecSchema, type InferenceModelSpec, type StatusContent } from '../../shared/index.js';
import type { Verdict } from '../desired.js';
import { serviceUrl } from '../image/resources.js';
import type { KubeObject } from '../kube/types.js';
import type { RolloutStatus } from '../rollout/types.js';
import { aggregateStatus, type Condition } from './aggregate.js';

// The status job's one decision: what a resource's status is now, from the resource, its verdict,
// the node reports and (for an image resource) its Deployment. Pure.

export interface StatusInputs {
  model: KubeObject | undefined;
  verdict: Verdict | undefined;
  reports: Map<string, StatusContent>;
  /** The owned Deployment, for an image resource. */
  deployment?: KubeObject;
  unreachable: Map<string, string>;
  /** Nodes whose retained presence says offline. */
  offline?: Map<string, string>;
  now: string;
  /** The staged rollout's state (controller/rollout/), when the resource has one. */
  rollout?: RolloutStatus;
}

export function computeStatus(i: StatusInputs): Record<string, unknown> | undefined {
  const { model, verdict } = i;
  if (!model || model.metadata.deletionTimestamp || !verdict) return undefined;
  const parsed = InferenceModelSpecSchema.safeParse(model.spec);
  const spec: InferenceModelSpec | undefined = parsed.success ? parsed.data : undefined;
  const previous = (model.status?.conditions ?? []) as Condition[];
  const generation = model.metadata.generation;
  const base = { generation, spec, previous, now: i.now };
  if (verdict.kind === 'invalid') {
    const p = verdict.problems[0];
    return { ...aggregateStatus({ ...base, targets: [], reports: i.reports, problem: { reason: p.reason, message: verdict.problems.map((x) => x.message).join('; ') } }) };
  }
  if (verdict.kind === 'image') {
    const image = { url: serviceUrl(model.metadata.name, model.metadata.namespace ?? 'default'), replicas: spec?.replicas ?? 1, readyReplicas: i.deployment?.status?.readyReplicas ?? 0 };
    return { ...aggregateStatus({ ...base, targets: verdict.targets, reports: new Map(), image }) };
  }
  return { ...aggregateStatus({ ...base, targets: verdict.targets, reports: i.reports, unreachable: i.unreachable, offline: i.offline, rollout: i.rollout }) };
}
