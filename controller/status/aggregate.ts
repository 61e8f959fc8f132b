import { resolveTarget, type InferenceModelSpec, type StatusContent } from '../../shared/index.js';
import type { RolloutStatus } from '../rollout/types.js';

// Pure: what the nodes reported (plus what the controller knows) -> the resource's status.

export interface Condition {
  type: 'Ready' | 'Progressing' | 'Degraded';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface NodeStatus {
  node: string;
  phase: string;
  observedGeneration?: number;
  targetVersion?: string;
  servingVersion?: string;
  url?: string;
  reason?: string;
  message?: string;
  lastUpdateTime?: string;
}

export interface ModelStatus {
  observedGeneration?: number;
  url?: string;
  servingVersion?: string;
  readyNodes: number;
  targetNodes: number;
  ready: string;
  nodes: NodeStatus[];
  conditions: Condition[];
  /** A staged rollout's progress (controller/rollout/), copied from the input. */
  rollout?: RolloutStatus;
}

export interface AggregateInput {
  generation?: number;
  spec?: InferenceModelSpec;
  targets: string[];
  reports: Map<string, StatusContent>;
  /** Held back: the reason and message of the first problem. */
  problem?: { reason: string; message: string };
  /** Image deployments: what the Deployment says. */
  image?: { url: string; replicas: number; readyReplicas: number };
  previous?: Condition[];
  now: string;
  /** Target nodes the transport cannot reach now (node -> why): shown on their entries. */
  unreachable?: Map<string, string>;
  /** A staged rollout's progress, computed by controller/rollout/ and shown as status.rollout. */
  rollout?: RolloutStatus;
}

const IN_PROGRESS = new Set(['Pending', 'Downloading', 'Verifying', 'Installing', 'Installed', 'Starting']);
const MAX_NODES_LISTED = 5;

function condition(type: Condition['type'], status: Condition['status'], reason: string, message: string, input: AggregateInput): Condition {
  const prev = input.previous?.find((c) => c.type === type);
  const lastTransitionTime = prev && prev.status === status ? prev.lastTransitionTime : input.now;
  const c: Condition = { type, status, reason, message, lastTransitionTime };
  if (input.generation !== undefined) c.observedGeneration = input.generation;
  return c;
}

const list = (nodes: string[]) => nodes.slice(0, MAX_NODES_LISTED).join(', ') + (nodes.length > MAX_NODES_LISTED ? ` and ${nodes.length - MAX_NODES_LISTED} more` : '');

export function aggregateStatus(input: AggregateInput): ModelStatus {
  const status = aggregateOnly(input);
  if (input.rollout) status.rollout = input.rollout;
  return status;
}

function aggregateOnly(input: AggregateInput): ModelStatus {
  const base = { observedGeneration: input.generation };
  if (input.problem) {
    return {
      ...base,
      readyNodes: 0,
      targetNodes: input.targets.length,
      ready: `0/${input.targets.length}`,
      nodes: nodeEntries(input),
      conditions: [
        condition('Ready', 'False', input.problem.reason, input.problem.message, input),
        condition('Progressing', 'False', input.problem.reason, 'not sent to any node until the spec is fixed', input),
        condition('Degraded', 'True', input.problem.reason, input.problem.message, input),
      ],
    };
  }
  if (input.image) {
    const { url, replicas, readyReplicas } = input.image;
    const ok = readyReplicas >= replicas;
    return {
      ...base,
      url,
      readyNodes: readyReplicas,
      targetNodes: replicas,
      ready: `${readyReplicas}/${replicas}`,
      nodes: [],
      conditions: [
        condition('Ready', ok ? 'True' : 'False', ok ? 'DeploymentReady' : 'DeploymentNotReady', `${readyReplicas}/${replicas} replicas ready`, input),
        condition('Progressing', ok ? 'False' : 'True', ok ? 'Complete' : 'RollingOut', `${readyReplicas}/${replicas} replicas ready`, input),
        condition('Degraded', 'False', 'AsExpected', '', input),
      ],
    };
  }
  const target = input.spec ? resolveTarget(input.spec)?.version : undefined;
  const readyNodes: string[] = [];
  const failed: string[] = [];
  const progressing: string[] = [];
  for (const node of input.targets) {
    const r = input.reports.get(node);
    if (r?.phase === 'Serving' && r.servingVersion === target) readyNodes.push(node);
    else if (r?.phase === 'Failed') failed.push(node);
    else progressing.push(node);
  }
  const total = input.targets.length;
  const allReady = total > 0 && readyNodes.length === total;
  const status: ModelStatus = {
    ...base,
    readyNodes: readyNodes.length,
    targetNodes: total,
    ready: `${readyNodes.length}/${total}`,
    nodes: nodeEntries(input),
    conditions: [],
  };
  if (allReady) {
    status.servingVersion = target;
    const urls = new Set(input.targets.map((n) => input.reports.get(n)?.url).filter(Boolean));
    if (urls.size === 1) status.url = [...urls][0];
  }
  status.conditions = [
    total === 0
      ? condition('Ready', 'False', 'NoTargetNodes', 'no node matches nodeSelector and deployToLayer', input)
      : allReady
        ? condition('Ready', 'True', 'AllNodesServing', `${total}/${total} nodes serve version ${target}`, input)
        : condition('Ready', 'False', 'NodesNotReady', `${readyNodes.length}/${total} nodes serve version ${target}`, input),
    progressing.length
      ? condition('Progressing', 'True', 'Rolling', `waiting for ${list(progressing)}`, input)
      : condition('Progressing', 'False', failed.length ? 'Stalled' : 'Complete', failed.length ? `failed on ${list(failed)}` : 'every node is done', input),
    failed.length
      ? condition('Degraded', 'True', 'NodeFailed', failed.map((n) => `${n}: ${input.reports.get(n)?.reason ?? 'Failed'}`).slice(0, MAX_NODES_LISTED).join('; '), input)
      : condition('Degraded', 'False', 'AsExpected', '', input),
  ];
  return status;
}

function nodeEntries(input: AggregateInput): NodeStatus[] {
  const targets = new Set(input.targets);
  const names = new Set([...input.targets, ...[...input.reports.keys()].filter((n) => !targets.has(n))]);
  const out: NodeStatus[] = [];
  for (const node of [...names].sort()) {
    const r = input.reports.get(node);
    const unreachable = targets.has(node) ? input.unreachable?.get(node) : undefined;
    if (!r) {
      out.push({ node, phase: 'Pending', reason: unreachable ? 'NodeUnreachable' : 'NoReport', message: unreachable ?? 'the node has not reported yet' });
      continue;
    }
    // A node that no longer targets the resource stays listed until it says the model is gone.
    if (!targets.has(node) && r.phase === 'Deleted') continue;
    // The API server checks date-time formats: a node's odd clock string must not fail the write.
    const t = Date.parse(r.time);
    const e: NodeStatus = { node, phase: r.phase, observedGeneration: r.observedGeneration, lastUpdateTime: Number.isNaN(t) ? input.now : new Date(t).toISOString() };
    if (r.targetVersion) e.targetVersion = r.targetVersion;
    if (r.servingVersion) e.servingVersion = r.servingVersion;
    if (r.url) e.url = r.url;
    if (r.reason) e.reason = r.reason;
    if (r.message) e.message = r.message;
    // Its last report stays; what it says may be out of date while the node cannot be reached.
    if (unreachable) {
      e.reason = 'NodeUnreachable';
      e.message = unreachable;
    }
    out.push(e);
  }
  return out;
}
