import { resolveTarget, type InferenceModelSpec, type StatusContent } from '../../shared/index.js';
import type { RolloutStatus } from '../rollout/types.js';

// Pure: what the nodes reported (plus what the controller knows) -> the resource's status.
//
// The resource carries counts (per serving version and per phase, as a DaemonSet's status does)
// and lists only the nodes a person should look at (failed, deferred, held by a rollback,
// unreachable or offline, no report yet, leaving), capped at MAX_ATTENTION with the count of the
// rest: its size does not grow with the fleet. Every node's detail is `nodeDetails` below, served
// by the controller at GET /status/<namespace>/<name> (docs/status.md).

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
  heldVersion?: string;
  deferredUntil?: string;
  url?: string;
  reason?: string;
  message?: string;
  lastUpdateTime?: string;
}

export interface VersionCount {
  version: string;
  nodes: number;
}

export interface ModelStatus {
  observedGeneration?: number;
  url?: string;
  /** The one version every target node serves (whatever the target), when they agree. */
  servingVersion?: string;
  /** What serves where, for the SERVING column: `2`, or `2 (3 nodes), 1 (1)`. */
  serving?: string;
  /** The row's phase, for the PHASE column: Ready, Progressing, Rolling b/n, Paused, Aborted, Degraded, Held, Invalid, NoNodes. */
  phase: string;
  readyNodes: number;
  targetNodes: number;
  ready: string;
  /** Target nodes per version they serve, most first. */
  versions: VersionCount[];
  /** Target nodes per reported phase (NoReport: not heard from yet). */
  phases: Record<string, number>;
  /** The nodes that need a person's eyes, at most MAX_ATTENTION of them. */
  nodes: NodeStatus[];
  /** How many more nodes need attention than `nodes` lists. */
  nodesNotListed: number;
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
  /** Target nodes whose retained presence says offline (node -> since when or why). */
  offline?: Map<string, string>;
  /** A staged rollout's progress, computed by controller/rollout/ and shown as status.rollout. */
  rollout?: RolloutStatus;
}

const IN_PROGRESS = new Set(['Pending', 'Downloading', 'Verifying', 'Installing', 'Installed', 'Starting', 'Deferred']);
/** Names in a condition message. */
const MAX_NODES_NAMED = 5;
/** Entries in status.nodes: with each entry's fields bounded (ENTRY_MAX_BYTES), so is the resource. */
export const MAX_ATTENTION = 20;
/** Distinct versions counted one by one; the rest are summed under "other". */
export const MAX_VERSIONS = 16;
/** A node's message in the resource (the full one is at the HTTP endpoint). */
export const MAX_ENTRY_MESSAGE = 512;

function condition(type: Condition['type'], status: Condition['status'], reason: string, message: string, input: AggregateInput): Condition {
  const prev = input.previous?.find((c) => c.type === type);
  const lastTransitionTime = prev && prev.status === status ? prev.lastTransitionTime : input.now;
  const c: Condition = { type, status, reason, message, lastTransitionTime };
  if (input.generation !== undefined) c.observedGeneration = input.generation;
  return c;
}

const list = (nodes: string[]) => nodes.slice(0, MAX_NODES_NAMED).join(', ') + (nodes.length > MAX_NODES_NAMED ? ` and ${nodes.length - MAX_NODES_NAMED} more` : '');

const empty = (input: AggregateInput, phase: string) => ({
  observedGeneration: input.generation,
  phase,
  readyNodes: 0,
  targetNodes: input.targets.length,
  ready: `0/${input.targets.length}`,
  versions: [] as VersionCount[],
  phases: {} as Record<string, number>,
  nodes: [] as NodeStatus[],
  nodesNotListed: 0,
});

/** `2`, or `2 (3 nodes), 1 (1)`; empty when no node serves. */
export function servingSummary(versions: VersionCount[]): string | undefined {
  if (!versions.length) return undefined;
  if (versions.length === 1) return versions[0].version;
  return versions.map((v, i) => `${v.version} (${v.nodes}${i === 0 ? (v.nodes === 1 ? ' node' : ' nodes') : ''})`).join(', ');
}

function countVersions(serving: Map<string, number>): VersionCount[] {
  const all = [...serving].map(([version, nodes]) => ({ version, nodes })).sort((a, b) => b.nodes - a.nodes || a.version.localeCompare(b.version));
  if (all.length <= MAX_VERSIONS) return all;
  const rest = all.slice(MAX_VERSIONS - 1).reduce((n, v) => n + v.nodes, 0);
  return [...all.slice(0, MAX_VERSIONS - 1), { version: 'other', nodes: rest }];
}

/** The version a node serves now, from its report (a Failed update keeps the old one serving). */
const servedBy = (r: StatusContent | undefined) => (r && r.phase !== 'Deleting' && r.phase !== 'Deleted' ? r.servingVersion : undefined);
/** A rollback on the node holds this version: the node will not move to the target on its own. */
const heldOn = (r: StatusContent | undefined, target: string | undefined) => (r?.heldVersion && r.heldVersion !== target && r.servingVersion === r.heldVersion ? r.heldVersion : undefined);

export function aggregateStatus(input: AggregateInput): ModelStatus {
  const status = aggregateOnly(input);
  if (input.rollout) status.rollout = input.rollout;
  return status;
}

function aggregateOnly(input: AggregateInput): ModelStatus {
  if (input.problem) {
    const s = { ...empty(input, 'Invalid'), conditions: [] as Condition[] };
    const { entries } = attention(input, undefined);
    s.nodes = entries.slice(0, MAX_ATTENTION);
    s.nodesNotListed = entries.length - s.nodes.length;
    s.conditions = [
      condition('Ready', 'False', input.problem.reason, input.problem.message, input),
      condition('Progressing', 'False', input.problem.reason, 'not sent to any node until the spec is fixed', input),
      condition('Degraded', 'True', input.problem.reason, input.problem.message, input),
    ];
    return s;
  }
  if (input.image) {
    const { url, replicas, readyReplicas } = input.image;
    const ok = readyReplicas >= replicas;
    return {
      ...empty(input, ok ? 'Ready' : 'Progressing'),
      url,
      readyNodes: readyReplicas,
      targetNodes: replicas,
      ready: `${readyReplicas}/${replicas}`,
      conditions: [
        condition('Ready', ok ? 'True' : 'False', ok ? 'DeploymentReady' : 'DeploymentNotReady', `${readyReplicas}/${replicas} replicas ready`, input),
        condition('Progressing', ok ? 'False' : 'True', ok ? 'Complete' : 'RollingOut', `${readyReplicas}/${replicas} replicas ready`, input),
        condition('Degraded', 'False', 'AsExpected', '', input),
      ],
    };
  }
  const target = input.spec ? resolveTarget(input.spec)?.version : undefined;
  const ready: string[] = [];
  const failed: string[] = [];
  const held: string[] = [];
  const deferred: string[] = [];
  const progressing: string[] = [];
  const serving = new Map<string, number>();
  const phases: Record<string, number> = {};
  for (const node of input.targets) {
    const r = input.reports.get(node);
    const phase = r?.phase ?? 'NoReport';
    phases[phase] = (phases[phase] ?? 0) + 1;
    const v = servedBy(r);
    if (v) serving.set(v, (serving.get(v) ?? 0) + 1);
    if (r?.phase === 'Serving' && r.servingVersion === target) ready.push(node);
    else if (r?.phase === 'Failed') failed.push(node);
    else if (heldOn(r, target)) held.push(node);
    else {
      if (r?.phase === 'Deferred') deferred.push(node);
      progressing.push(node);
    }
  }
  const total = input.targets.length;
  const allReady = total > 0 && ready.length === total;
  const versions = countVersions(serving);
  const { entries } = attention(input, target);
  const status: ModelStatus = {
    ...empty(input, ''),
    readyNodes: ready.length,
    ready: `${ready.length}/${total}`,
    versions,
    phases,
    nodes: entries.slice(0, MAX_ATTENTION),
    nodesNotListed: Math.max(0, entries.length - MAX_ATTENTION),
    conditions: [],
  };
  const summary = servingSummary(versions);
  if (summary) status.serving = summary;
  // Every target node serves the same version (the target or not): that is what serves.
  if (versions.length === 1 && versions[0].nodes === total && versions[0].version !== 'other') {
    status.servingVersion = versions[0].version;
    const urls = new Set(input.targets.map((n) => input.reports.get(n)?.url).filter(Boolean));
    if (urls.size === 1) status.url = [...urls][0];
  }
  const ro = input.rollout && input.rollout.state !== 'Complete' ? input.rollout : undefined;
  status.phase =
    total === 0
      ? 'NoNodes'
      : ro?.state === 'Aborted'
        ? 'Aborted'
        : ro?.state === 'Paused'
          ? 'Paused'
          : ro
            ? `Rolling ${ro.batch}/${ro.batches}`
            : allReady
              ? 'Ready'
              : progressing.length
                ? 'Progressing'
                : failed.length
                  ? 'Degraded'
                  : held.length
                    ? 'Held'
                    : 'Progressing';
  const heldMsg = () => `${list(held)} ${held.length === 1 ? 'holds' : 'hold'} an earlier version by a rollback on the node (\`modeld rollback --release\` there ends it)`;
  status.conditions = [
    total === 0
      ? condition('Ready', 'False', 'NoTargetNodes', 'no node matches nodeSelector and deployToLayer', input)
      : allReady
        ? condition('Ready', 'True', 'AllNodesServing', `${total}/${total} nodes serve version ${target}`, input)
        : condition('Ready', 'False', 'NodesNotReady', `${ready.length}/${total} nodes serve version ${target}`, input),
    ro?.state === 'Aborted'
      ? condition('Progressing', 'False', ro.reason ?? 'RolloutAborted', ro.message ?? `aborted at batch ${ro.batch}/${ro.batches}`, input)
      : ro?.state === 'Paused'
        ? condition('Progressing', 'Unknown', ro.reason ?? 'RolloutPaused', ro.message ?? `paused after batch ${ro.batch}/${ro.batches}`, input)
        : ro
          ? condition('Progressing', 'True', ro.reason ?? 'Rolling', ro.message ?? `batch ${ro.batch}/${ro.batches}${progressing.length ? `: waiting for ${list(progressing)}` : ''}`, input)
          : progressing.length
            ? condition('Progressing', 'True', deferred.length === progressing.length ? 'Deferred' : 'Rolling', `waiting for ${list(progressing)}${deferred.length ? ` (${deferred.length} deferred on the node)` : ''}`, input)
            : failed.length
              ? condition('Progressing', 'False', 'Stalled', `failed on ${list(failed)}`, input)
              : held.length
                ? condition('Progressing', 'False', 'HeldOnNode', heldMsg(), input)
                : condition('Progressing', 'False', 'Complete', 'every node is done', input),
    failed.length
      ? condition('Degraded', 'True', 'NodeFailed', failed.map((n) => `${n}: ${input.reports.get(n)?.reason ?? 'Failed'}`).slice(0, MAX_NODES_NAMED).join('; ') + (failed.length > MAX_NODES_NAMED ? ` and ${failed.length - MAX_NODES_NAMED} more` : ''), input)
      : ro?.state === 'Aborted'
        ? condition('Degraded', 'True', ro.reason ?? 'RolloutAborted', ro.message ?? 'the rollout was aborted', input)
        : held.length
          ? condition('Degraded', 'True', 'HeldOnNode', heldMsg(), input)
          : condition('Degraded', 'False', 'AsExpected', '', input),
  ];
  return status;
}

/** Attention first: what is broken, then what cannot be reached, then what waits on a person. */
const RANK: Record<string, number> = { NodeFailed: 0, NodeUnreachable: 1, NodeOffline: 1, RollbackHeld: 2, Deferred: 3, NoReport: 4, Leaving: 5 };

/** Why a node needs a person's eyes, or undefined when it does not. */
function concern(input: AggregateInput, node: string, target: string | undefined, isTarget: boolean): string | undefined {
  const r = input.reports.get(node);
  if (!isTarget) return r && r.phase !== 'Deleted' ? 'Leaving' : undefined;
  if (input.unreachable?.has(node)) return 'NodeUnreachable';
  if (input.offline?.has(node)) return 'NodeOffline';
  if (!r) return 'NoReport';
  if (r.phase === 'Failed') return 'NodeFailed';
  if (r.phase === 'Deferred') return 'Deferred';
  if (heldOn(r, target)) return 'RollbackHeld';
  return undefined;
}

function attention(input: AggregateInput, target: string | undefined): { entries: NodeStatus[] } {
  const targets = new Set(input.targets);
  const found: Array<{ node: string; why: string }> = [];
  for (const node of input.targets) {
    const why = concern(input, node, target, true);
    if (why) found.push({ node, why });
  }
  for (const node of input.reports.keys()) {
    if (targets.has(node)) continue;
    const why = concern(input, node, target, false);
    if (why) found.push({ node, why });
  }
  found.sort((a, b) => RANK[a.why] - RANK[b.why] || a.node.localeCompare(b.node));
  // Only the listed ones are built: the work and the result stay small for a large fleet.
  const entries = found.slice(0, MAX_ATTENTION).map(({ node, why }) => entryFor(input, node, why));
  const rest = found.slice(MAX_ATTENTION).map(({ node }) => ({ node }) as NodeStatus);
  return { entries: [...entries, ...rest] };
}

function entryFor(input: AggregateInput, node: string, why: string | undefined, full = false): NodeStatus {
  const r = input.reports.get(node);
  const unreachable = input.unreachable?.get(node);
  const offline = input.offline?.get(node);
  if (!r) {
    const message = unreachable ?? offline ?? 'the node has not reported yet';
    return { node, phase: 'Pending', reason: unreachable ? 'NodeUnreachable' : offline ? 'NodeOffline' : 'NoReport', message };
  }
  // The API server checks date-time formats: a node's odd clock string must not fail the write.
  const t = Date.parse(r.time);
  const e: NodeStatus = { node, phase: r.phase, observedGeneration: r.observedGeneration, lastUpdateTime: Number.isNaN(t) ? input.now : new Date(t).toISOString() };
  if (r.targetVersion) e.targetVersion = r.targetVersion;
  if (r.servingVersion) e.servingVersion = r.servingVersion;
  if (r.heldVersion) e.heldVersion = r.heldVersion;
  if (r.deferredUntil) e.deferredUntil = r.deferredUntil;
  if (r.url) e.url = r.url;
  if (r.reason) e.reason = r.reason;
  if (r.message) e.message = full || r.message.length <= MAX_ENTRY_MESSAGE ? r.message : `${r.message.slice(0, MAX_ENTRY_MESSAGE - 1)}…`;
  // Its last report stays; what it says may be out of date while the node cannot be reached.
  if (unreachable || offline) {
    e.reason = unreachable ? 'NodeUnreachable' : 'NodeOffline';
    e.message = (unreachable ?? offline)!;
  } else if (why === 'RollbackHeld' && !e.reason) e.reason = 'RollbackHeld';
  return e;
}

/**
 * Every node's full entry (targets and nodes still leaving), for the controller's
 * GET /status/<namespace>/<name>: the detail the resource no longer carries.
 */
export function nodeDetails(input: Pick<AggregateInput, 'targets' | 'reports' | 'unreachable' | 'offline' | 'now' | 'spec'>): NodeStatus[] {
  const targets = new Set(input.targets);
  const target = input.spec ? resolveTarget(input.spec)?.version : undefined;
  const names = [...input.targets, ...[...input.reports.keys()].filter((n) => !targets.has(n) && input.reports.get(n)?.phase !== 'Deleted')].sort();
  return names.map((n) => entryFor(input as AggregateInput, n, concern(input as AggregateInput, n, target, targets.has(n)), true));
}
