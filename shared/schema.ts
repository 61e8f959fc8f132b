import { z } from 'zod';
import { ModelName, NodeName, ResourceName, Sha256, Version } from './names.js';

// The InferenceModel resource, exactly as the seed names its fields. This file is the single
// source of truth: TypeScript types, runtime validation and the CRD's openAPIV3Schema come from it.

export const API_GROUP = 'ai.kubeedge.io';
export const API_VERSION = 'v1alpha1';
export const KIND = 'InferenceModel';
export const PLURAL = 'inferencemodels';
export const SHORT_NAME = 'im';

export const DeployLayer = z.enum(['edge', 'cloud']);
export type DeployLayer = z.infer<typeof DeployLayer>;

export const ManifestEntrySchema = z.strictObject({
  version: Version,
  downloadURL: z.string().min(1).max(2048),
  sha256sum: Sha256.optional(),
});
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;

const LabelMap = z
  .record(z.string().min(1).max(317), z.string().max(63))
  .refine((m) => Object.keys(m).length <= 64, 'at most 64 labels');

/** A number of nodes, as a count or as a percent of the target nodes (one of the two). */
const Count = z.number().int().min(0).max(1_000_000).optional();
const Percent = z.number().int().min(0).max(100).optional();
/** Messages shared with the CRD's CEL rules (controller/crd.ts), so kubectl and the controller say the same. */
export const AMOUNT_BOTH = 'set count or percent, not both';
export const CANARY_BOTH = 'canary is a selector or an amount (count or percent), not both';
const oneAmount = (a: { count?: number; percent?: number }) => a.count === undefined || a.percent === undefined;
const NodeAmount = z.strictObject({ count: Count, percent: Percent }).refine(oneAmount, AMOUNT_BOTH);

/**
 * Optional staged rollout (controller/rollout/): canary, then batches, with pauses, a per-batch
 * deadline and a failure threshold that aborts. `paused`, `abort` and `resumeBatch` steer the
 * rollout in progress; only a change of manifest, targetVersion or image starts a new one.
 */
export const RolloutSpecSchema = z.strictObject({
  canary: z
    .strictObject({ count: Count, percent: Percent, selector: LabelMap.optional() })
    .refine(oneAmount, AMOUNT_BOTH)
    .refine((c) => !c.selector || (c.count === undefined && c.percent === undefined), CANARY_BOTH)
    .optional(),
  /** Nodes per batch after the canary (default: all of them in one batch). */
  batch: NodeAmount.optional(),
  /** Wait this long after a batch is done before the next starts. */
  pauseSeconds: z.number().int().min(0).max(30 * 24 * 3600).optional(),
  /** After each batch wait until a person sets resumeBatch to the next batch's number. */
  pauseUntilResumed: z.boolean().optional(),
  /**
   * At most this many nodes of the batch in progress updating at once (sent the new version and
   * not yet serving it; a node Failed or Deferred on it frees its slot); the batch size stays
   * canary/batch. Default: the whole batch at once.
   */
  maxUnavailable: z.number().int().min(1).max(1_000_000).optional(),
  /** A batch not done this long after it started aborts the rollout (deferred nodes excepted). */
  progressDeadlineSeconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
  /** This many (or this percent) of a batch's nodes ending Failed aborts the rollout. */
  failureThreshold: NodeAmount.optional(),
  /** Steering: no further batch starts while true. */
  paused: z.boolean().optional(),
  /** Steering: abort the rollout in progress (unreached nodes keep their version, failed ones roll back). */
  abort: z.boolean().optional(),
  /** Steering: batches up to this number may start (answers pauseUntilResumed). */
  resumeBatch: z.number().int().min(0).max(1_000_000).optional(),
});
export type RolloutSpec = z.infer<typeof RolloutSpecSchema>;

/**
 * The structural shape, with both spellings of frameworkType. The CRD is generated from this
 * object so that kubectl keeps the seed's misspelled `fraemworkType` instead of pruning it.
 */
export const InferenceModelSpecShape = z.object({
  modelName: ModelName,
  deployToLayer: DeployLayer,
  frameworkType: z.string().max(63).optional(),
  fraemworkType: z.string().max(63).optional(),
  nodeSelector: LabelMap.optional(),
  image: z.string().max(1024).optional(),
  manifest: z.array(ManifestEntrySchema).max(256).optional(),
  targetVersion: z.string().max(63).optional(),
  replicas: z.number().int().min(0).max(64).optional(),
  rollout: RolloutSpecSchema.optional(),
});

/** Accepts the seed's `fraemworkType`, always writes `frameworkType`. */
export const InferenceModelSpecSchema = InferenceModelSpecShape.transform(({ fraemworkType, ...spec }) => {
  const frameworkType = spec.frameworkType ?? fraemworkType;
  return frameworkType === undefined ? spec : { ...spec, frameworkType };
});
export type InferenceModelSpec = z.output<typeof InferenceModelSpecSchema>;

export const ObjectMetaSchema = z.object({
  name: ResourceName,
  namespace: ResourceName,
  uid: z.string().max(128).optional(),
  generation: z.number().int().min(0).optional(),
  resourceVersion: z.string().max(128).optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>;

/** `update` / `insert` content: one resource. */
export const ModelContentSchema = z.object({
  metadata: ObjectMetaSchema,
  spec: InferenceModelSpecSchema,
});
export type ModelContent = z.output<typeof ModelContentSchema>;

/** `delete` content: which resource. */
export const DeleteContentSchema = z.object({ metadata: ObjectMetaSchema });
export type DeleteContent = z.infer<typeof DeleteContentSchema>;

/** `sync` content: the node's complete desired set. */
export const SyncContentSchema = z.object({
  node: NodeName.optional(),
  items: z.array(ModelContentSchema).max(1000),
  /**
   * Whether the cluster has a Node of this name. `false`: the set is empty only because the cloud
   * does not know the node (a renamed or unregistered node), and the agent removes nothing.
   * Absent (an older controller): the agent refuses a sync that would remove every model it has.
   */
  nodeKnown: z.boolean().optional(),
  /** The nonce of the hello this sync answers: a signed sync is fresh only when it echoes it. */
  nonce: z.string().max(128).optional(),
});
export type SyncContent = z.output<typeof SyncContentSchema>;

export const Phase = z.enum([
  'Pending',
  'Downloading',
  'Verifying',
  'Installing',
  'Installed',
  'Starting',
  'Serving',
  'Failed',
  /** The new version is downloaded and verified, but a local hold (`modeld defer`) keeps the switch back. */
  'Deferred',
  'Deleting',
  'Deleted',
]);
export type Phase = z.infer<typeof Phase>;

export const VersionState = z.enum(['available', 'downloading', 'installed', 'serving', 'previous', 'failed']);

export const StatusContentSchema = z.object({
  node: NodeName,
  namespace: ResourceName,
  name: ResourceName,
  uid: z.string().max(128).optional(),
  observedGeneration: z.number().int().min(0),
  phase: Phase,
  targetVersion: z.string().max(63).optional(),
  servingVersion: z.string().max(63).optional(),
  /** A rollback hold in force on the node (`modeld rollback`): this version serves until the spec changes. */
  heldVersion: z.string().max(63).optional(),
  /** Phase Deferred: when the local hold ends at the latest (RFC 3339). */
  deferredUntil: z.string().max(64).optional(),
  url: z.string().max(2048).optional(),
  replicas: z.number().int().min(0).optional(),
  readyReplicas: z.number().int().min(0).optional(),
  /** Which onnxruntime serves a built-in model in the node's runtime host: "native" or "wasm" (a string: receivers accept others). */
  backend: z.string().max(32).optional(),
  progress: z.object({ bytes: z.number().min(0), totalBytes: z.number().min(0).optional() }).optional(),
  /** A machine code (the agent's error codes and a few notices); a string here so receivers accept codes they do not know. */
  reason: z.string().max(128).optional(),
  message: z.string().max(4096).optional(),
  versions: z
    .array(z.object({ version: z.string().max(63), sha256sum: z.string().max(64).optional(), state: VersionState }))
    .max(256)
    .optional(),
  time: z.string().max(64),
});
export type StatusContent = z.infer<typeof StatusContentSchema>;

/** `hello` content: the agent asks for a full sync after each connect. */
export const HelloContentSchema = z.object({
  node: NodeName,
  layer: DeployLayer.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  agentVersion: z.string().max(64).optional(),
  /** Fresh for each connect; the sync that answers this hello echoes it (freshness without a clock). */
  nonce: z.string().max(128).optional(),
  /** The highest header.sequence this node has accepted: a controller continues above it. */
  lastSequence: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
export type HelloContent = z.infer<typeof HelloContentSchema>;

/**
 * `ack` content, cloud -> node on `<prefix>/<node>/_ack`: the controller has folded these messages
 * (by `msg_id`) into the resource's status, or deliberately discarded them; the node may forget
 * them. Sent only for messages whose header asked for it (`header.ack: true`).
 */
export const AckContentSchema = z.object({
  node: NodeName,
  msgIds: z.array(z.string().min(1).max(128)).min(1).max(1000),
});
export type AckContent = z.infer<typeof AckContentSchema>;

/** Retained presence on `<prefix>/<node>/_agent`; `offline` is the last will. */
export const PresenceSchema = z.object({
  state: z.enum(['online', 'offline']),
  node: NodeName.optional(),
  time: z.string().max(64).optional(),
  agentVersion: z.string().max(64).optional(),
});
export type Presence = z.infer<typeof PresenceSchema>;
