import {
  InferenceModelSpecSchema,
  NodeName,
  describeZodError,
  specProblems,
  type ModelContent,
  type SpecProblem,
} from '../shared/index.js';
import type { KubeObject } from './kube/types.js';
import { objectKey } from './kube/types.js';
import { targetNodes } from './placement.js';

// Pure: the cluster's resources and Nodes -> what every node should hold, and why a resource is
// held back. Nothing here does I/O.

export type Verdict =
  | { kind: 'agents'; content: ModelContent; targets: string[] }
  | { kind: 'image'; targets: string[] }
  | { kind: 'invalid'; problems: SpecProblem[] | Array<{ reason: 'InvalidSpec'; message: string }> };

export interface Desired {
  /** node -> resource key -> content */
  perNode: Map<string, Map<string, ModelContent>>;
  verdicts: Map<string, Verdict>;
}

export interface DesiredOptions {
  edgeLabel: string;
  requireDigest: boolean;
}

export function judge(model: KubeObject, nodes: Iterable<KubeObject>, opts: DesiredOptions): Verdict {
  const parsed = InferenceModelSpecSchema.safeParse(model.spec);
  if (!parsed.success) return { kind: 'invalid', problems: [{ reason: 'InvalidSpec', message: describeZodError(parsed.error) }] };
  const spec = parsed.data;
  const targets = targetNodes(nodes, spec, opts.edgeLabel).filter((n) => NodeName.safeParse(n).success);
  if (spec.image) return { kind: 'image', targets };
  const problems = specProblems(spec, { requireDigest: opts.requireDigest });
  if (problems.length) return { kind: 'invalid', problems };
  const m = model.metadata;
  const content: ModelContent = {
    metadata: { name: m.name, namespace: m.namespace ?? 'default', uid: m.uid, generation: m.generation, resourceVersion: m.resourceVersion },
    spec,
  };
  return { kind: 'agents', content, targets };
}

export function computeDesired(models: Iterable<KubeObject>, nodes: KubeObject[], opts: DesiredOptions): Desired {
  const perNode = new Map<string, Map<string, ModelContent>>();
  const verdicts = new Map<string, Verdict>();
  for (const model of models) {
    if (model.metadata.deletionTimestamp) continue;
    const key = objectKey(model);
    const verdict = judge(model, nodes, opts);
    verdicts.set(key, verdict);
    if (verdict.kind !== 'agents') continue;
    for (const node of verdict.targets) {
      let set = perNode.get(node);
      if (!set) perNode.set(node, (set = new Map()));
      set.set(key, verdict.content);
    }
  }
  return { perNode, verdicts };
}
