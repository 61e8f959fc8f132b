import { z } from 'zod';
import { MAX_ATTENTION, MAX_VERSIONS } from './status/aggregate.js';
import { AMOUNT_BOTH, API_GROUP, API_VERSION, CANARY_BOTH, InferenceModelSpecShape, KIND, PLURAL, SHORT_NAME } from '../shared/index.js';

// The CRD, generated from the shared schema (the single source of truth) plus the status schema
// below. scripts/gen-crd.ts writes it to deploy/crd.yaml; a test fails when that file is stale.

type JsonSchema = Record<string, unknown>;

/**
 * Turns a JSON Schema from zod into a Kubernetes structural schema: every node has a type, no
 * `$schema`, no `propertyNames` (not supported), `additionalProperties` only as a schema for maps
 * (never `false`: the API server prunes unknown fields instead).
 */
export function toStructural(schema: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$schema' || key === 'propertyNames' || key === 'default') continue;
    if (key === 'additionalProperties') {
      if (value && typeof value === 'object') out.additionalProperties = toStructural(value as JsonSchema);
      continue;
    }
    if (key === 'properties') {
      out.properties = Object.fromEntries(Object.entries(value as Record<string, JsonSchema>).map(([k, v]) => [k, toStructural(v)]));
      continue;
    }
    if (key === 'items') {
      out.items = toStructural(value as JsonSchema);
      continue;
    }
    out[key] = value;
  }
  if (!out.type) throw new Error(`schema node without a type: ${JSON.stringify(schema).slice(0, 200)}`);
  return out;
}

export function specSchema(): JsonSchema {
  const spec = toStructural(z.toJSONSchema(InferenceModelSpecShape, { io: 'input', unrepresentable: 'throw' }) as JsonSchema);
  const props = spec.properties as Record<string, JsonSchema>;
  // The refine "at most 64 labels" is not representable by zod's export; say it here.
  props.nodeSelector = { ...props.nodeSelector, maxProperties: 64 };
  const manifest = props.manifest as JsonSchema;
  const item = manifest.items as JsonSchema;
  const itemProps = item.properties as Record<string, JsonSchema>;
  // CEL costs are estimated from maxItems and maxLength (a pattern does not bound a length): with
  // these bounds the rules below cost well under the API server's per-CRD budget.
  itemProps.version = { ...itemProps.version, maxLength: 63 };
  itemProps.sha256sum = { ...itemProps.sha256sum, maxLength: 64, 'x-kubernetes-validations': DIGEST_RULES };
  props.targetVersion = { ...props.targetVersion, maxLength: 63 };
  props.manifest = {
    ...manifest,
    'x-kubernetes-list-type': 'atomic',
    'x-kubernetes-validations': MANIFEST_RULES,
  };
  const rollout = props.rollout as JsonSchema;
  const rolloutProps = rollout.properties as Record<string, JsonSchema>;
  for (const field of ['batch', 'failureThreshold']) rolloutProps[field] = { ...rolloutProps[field], 'x-kubernetes-validations': AMOUNT_RULES };
  rolloutProps.canary = { ...rolloutProps.canary, 'x-kubernetes-validations': [...AMOUNT_RULES, ...CANARY_RULES] };
  spec['x-kubernetes-validations'] = SPEC_RULES;
  return spec;
}

// Refused at apply time by the API server itself (CEL, x-kubernetes-validations), so a mistake
// never reaches the controller as a resource it can only hold back. The controller checks the same
// (shared/versions.ts specProblems) for API servers without CEL rules (before 1.25). No `reason`
// or `fieldPath` on the rules: API servers before 1.28 do not know them, and a rule on the field
// itself (the digest) already names it.

export const SPEC_RULES = [
  {
    // As specProblems: an image resource ignores targetVersion, and "" means the latest entry.
    rule: "(has(self.image) && self.image != '') || !has(self.targetVersion) || self.targetVersion == '' || (has(self.manifest) && self.manifest.exists(m, m.version == self.targetVersion))",
    message: "targetVersion must be one of the manifest's versions",
  },
];
export const MANIFEST_RULES = [{ rule: 'self.all(a, self.exists_one(b, b.version == a.version))', message: 'manifest versions must be unique' }];
export const AMOUNT_RULES = [{ rule: '!(has(self.count) && has(self.percent))', message: AMOUNT_BOTH }];
export const CANARY_RULES = [{ rule: '!has(self.selector) || (!has(self.count) && !has(self.percent))', message: CANARY_BOTH }];
export const DIGEST_RULES = [{ rule: "self.matches('^[0-9a-fA-F]{64}$')", message: 'sha256sum must be 64 hexadecimal digits (a SHA-256 digest)' }];

const str = (description?: string): JsonSchema => (description ? { type: 'string', description } : { type: 'string' });
const int = (description?: string): JsonSchema => (description ? { type: 'integer', format: 'int64', description } : { type: 'integer', format: 'int64' });

export function statusSchema(): JsonSchema {
  return {
    type: 'object',
    properties: {
      observedGeneration: int('the generation the controller last acted on'),
      url: str('where the model is served (the Service URL for image deployments, else the one node URL when all agree)'),
      servingVersion: str('the one version every target node serves (the target or not), when they all agree'),
      serving: { type: 'string', maxLength: 1024, description: 'what serves where, for the SERVING column: "2", or "2 (3 nodes), 1 (1)"' },
      phase: { type: 'string', maxLength: 64, description: 'for the PHASE column: Ready, Progressing, Rolling <batch>/<batches>, Paused, Aborted, Degraded, Held, Invalid, NoNodes' },
      versions: {
        type: 'array',
        maxItems: MAX_VERSIONS,
        description: 'target nodes per version they serve, most first (the rest summed as "other")',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['version'],
        items: { type: 'object', required: ['version', 'nodes'], properties: { version: { type: 'string', maxLength: 63 }, nodes: int() } },
      },
      phases: { type: 'object', maxProperties: 32, additionalProperties: { type: 'integer', format: 'int64' }, description: 'target nodes per reported phase (NoReport: not heard from yet)' },
      nodesNotListed: int('nodes needing attention beyond those in nodes (GET /status/<namespace>/<name> on the controller lists every node)'),
      readyNodes: int('target nodes reporting Serving the target version'),
      targetNodes: int('nodes selected by nodeSelector and deployToLayer'),
      ready: str('"readyNodes/targetNodes", for the printer column'),
      nodes: {
        type: 'array',
        maxItems: MAX_ATTENTION,
        description: 'the nodes that need a person: failed, unreachable or offline, held by a rollback, deferred, not reported yet, leaving',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['node'],
        items: {
          type: 'object',
          required: ['node'],
          properties: {
            node: str(),
            phase: str(),
            observedGeneration: int(),
            servingVersion: str(),
            targetVersion: str(),
            heldVersion: str(),
            deferredUntil: str(),
            url: str(),
            reason: str(),
            message: str(),
            lastUpdateTime: { type: 'string', format: 'date-time' },
          },
        },
      },
      rollout: rolloutStatusSchema(),
      conditions: {
        type: 'array',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
        items: {
          type: 'object',
          required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
          properties: {
            type: str(),
            status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
            observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
            lastTransitionTime: { type: 'string', format: 'date-time' },
            reason: { type: 'string', maxLength: 1024 },
            message: { type: 'string', maxLength: 32768 },
          },
        },
      },
    },
  };
}

/** status.rollout: the staged rollout's progress that cannot be derived (controller/rollout/). */
export function rolloutStatusSchema(): JsonSchema {
  return {
    type: 'object',
    description: 'the staged rollout (spec.rollout) of the current revision',
    required: ['revision', 'state', 'batch'],
    properties: {
      revision: str('hash of manifest, targetVersion and image: a change starts a new rollout'),
      state: { type: 'string', enum: ['Progressing', 'Paused', 'Aborted', 'Complete'] },
      batch: int('1-based number of the batch in progress'),
      batches: int('number of batches (the canary is the first)'),
      fromVersion: str('the version nodes not yet reached keep'),
      toVersion: str('the version being rolled out'),
      batchStartTime: { type: 'string', format: 'date-time' },
      pauseStartTime: { type: 'string', format: 'date-time' },
      reason: { type: 'string', maxLength: 128 },
      message: { type: 'string', maxLength: 1024 },
      batchNodes: int('nodes in the current batch'),
      batchServing: int('of them serving toVersion'),
      batchFailed: int('of them Failed'),
      batchDeferred: int('of them Deferred by a local hold'),
      batchReached: int('of them, in batch order, sent toVersion so far (spec.rollout.maxUnavailable lets them in a few at a time)'),
      batchInFlight: int('of them sent toVersion and not yet serving it, Failed or Deferred on it (at most spec.rollout.maxUnavailable)'),
      reachedNodes: int('nodes, in the order of all batches, sent toVersion so far (the batches before the current one, then batchReached)'),
      earlier: {
        type: 'array',
        description: 'earlier rollouts a new revision overtook unfinished, newest first: the first `nodes` nodes in batch order serve `version`, but for `except` (what a restarted controller sends a node not yet reached before it reports)',
        maxItems: 4,
        items: {
          type: 'object',
          required: ['version', 'nodes'],
          properties: {
            version: str('the version the earlier rollout sent'),
            nodes: int('how many nodes, in batch order, it had sent it'),
            except: { type: 'array', maxItems: 50, items: str(), description: 'of them, the nodes that did not serve it when the new revision started' },
          },
        },
      },
    },
  };
}

export function buildCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: KIND.toLowerCase(), shortNames: [SHORT_NAME] },
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Target', type: 'string', jsonPath: '.spec.targetVersion', description: 'the version the nodes should serve' },
            { name: 'Serving', type: 'string', jsonPath: '.status.serving', description: 'the version(s) the target nodes serve now' },
            { name: 'Ready', type: 'string', jsonPath: '.status.ready', description: 'ready nodes / target nodes' },
            { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Ready, Progressing, Rolling b/n, Paused, Aborted, Degraded, Held' },
            { name: 'Model', type: 'string', jsonPath: '.spec.modelName', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'A machine-learning model delivered to the nodes selected by nodeSelector and deployToLayer.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: specSchema(),
                status: statusSchema(),
              },
            },
          },
        },
      ],
    },
  };
}
