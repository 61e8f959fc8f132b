import { randomUUID } from 'node:crypto';
import { resolveTarget, specProblems, type InferenceModelSpec, type ModelContent } from '../../shared/index.js';
import { fetchPolicyFromConfig } from '../fetch/policy.js';
import { checkUrl } from '../fetch/url-policy.js';
import { ModeldError, type ErrorCode } from '../errors.js';
import { selectsNode } from '../reconcile/selector.js';
import { specHash } from '../reconcile/spec-hash.js';
import type { BlobTable } from '../store/blobs.js';
import type { EventTable } from '../store/events.js';
import type { ModelTable } from '../store/models.js';
import type { SpecTable } from '../store/specs.js';
import type { AdminDeps } from './context.js';
import { seededDigest } from './seeded.js';

// Local specs (`modeld apply` / `modeld delete`): desired state with source 'local', no cloud
// needed. The cloud's spec wins: a local apply over a cloud-managed model is refused
// (ManagedByCloud), and a cloud spec arriving for a locally applied model replaces it (intake
// records a CloudOverride event; status shows note CloudOverridesLocal). `modeld delete` removes
// local specs only. `planApply` is every check and the outcome without a write: `--dry-run` and
// `modeld diff` are it alone, `apply` is it and then the write.

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResult {
  model: string;
  action: ApplyAction;
  changed: boolean;
  generation: number;
  dryRun?: boolean;
  /** A rollback hold that stays in force (the spec did not change). */
  heldVersion?: string;
}

export interface ApplyPlan extends ApplyResult {
  /** The stored spec before, when there is one. */
  before?: InferenceModelSpec;
  after: InferenceModelSpec;
  /** The version the node serves now (as recorded) and the one it would serve after the apply. */
  servingNow?: string;
  wouldServe?: string;
}

/** What planning reads: the daemon's store, the CLI's read-only one, or none yet (EMPTY_STORE). */
export interface PlanStore {
  specs: Pick<SpecTable, 'get'>;
  models: Pick<ModelTable, 'get'>;
  events: Pick<EventTable, 'recent'>;
  blobs: Pick<BlobTable, 'get'>;
}
export const EMPTY_STORE: PlanStore = { specs: { get: () => undefined }, models: { get: () => undefined }, events: { recent: () => [] }, blobs: { get: () => undefined } };

type PlanDeps = Pick<AdminDeps, 'config'> & { store: PlanStore };

/** Everything `apply` checks, and what it would do; writes nothing. */
export function planApply(deps: PlanDeps, content: ModelContent): ApplyPlan {
  const { namespace, name } = content.metadata;
  const key = `${namespace}/${name}`;
  // Refused here, before intake, so a bad local file leaves no trace (no status, no event).
  const problems = specProblems(content.spec, { requireDigest: !deps.config.allowUnverified });
  if (problems.length) {
    const hint = problems[0].reason === 'MissingDigest' ? seededHint(deps, namespace, name, content.spec) : '';
    throw new ModeldError('BadRequest', `${key}: ${problems[0].reason}: ${problems.map((p) => p.message).join('; ')}${hint}`);
  }
  const target = content.spec.image ? undefined : resolveTarget(content.spec);
  if (target) {
    try {
      checkUrl(target.downloadURL, fetchPolicyFromConfig(deps.config));
    } catch (err) {
      throw new ModeldError('BadRequest', `${key}: ${(err as ModeldError).code}: ${(err as Error).message}`);
    }
  }
  const selected = selectsNode(content.spec, deps.config.node);
  if (!selected.ok) throw new ModeldError('BadRequest', `${key} is not meant for this node: ${selected.why}`);
  const existing = deps.store.specs.get(namespace, name);
  if (existing?.source === 'cloud') {
    throw new ModeldError('ManagedByCloud', `${key} is managed by the cloud; change or delete it there`);
  }
  // A local spec numbers its own generations: +1 on every change, so status shows what it answers.
  const same = !!existing && specHash(existing.spec) === specHash(content.spec);
  const generation = existing ? (same ? existing.generation : existing.generation + 1) : 1;
  const model = deps.store.models.get(namespace, name);
  // A hold lasts while the spec it was made under stays: unchanged keeps it, a change ends it.
  const heldVersion = same && model?.heldVersion && model.heldSpecHash === specHash(content.spec) ? model.heldVersion : undefined;
  return {
    model: key,
    action: !existing ? 'created' : same ? 'unchanged' : 'configured',
    changed: !same,
    generation,
    heldVersion,
    before: existing?.spec,
    after: content.spec,
    servingNow: model?.servingVersion,
    wouldServe: content.spec.image ? undefined : (heldVersion ?? target?.version),
  };
}

/** The fix a MissingDigest wants when this very name and version was seeded: its digest. */
function seededHint(deps: PlanDeps, namespace: string, name: string, spec: InferenceModelSpec): string {
  const target = resolveTarget(spec);
  const sha = target && seededDigest(deps.store, namespace, name, target.version);
  return sha ? `; it was seeded as sha256 ${sha}: add \`sha256sum: ${sha}\` to that manifest entry` : '';
}

/** Refusals from intake that mean the user's file is wrong (exit code 2) rather than a conflict. */
const SPEC_REASONS = new Set(['InvalidSpec', 'TargetVersionNotInManifest', 'DuplicateVersion', 'EmptyManifest', 'MissingDigest', 'URLNotAllowed', 'BadMessage']);

export function applyLocal(deps: Pick<AdminDeps, 'config' | 'store' | 'intake'>, content: ModelContent, opts: { dryRun?: boolean } = {}): ApplyResult {
  const plan = planApply(deps, content);
  const result: ApplyResult = { model: plan.model, action: plan.action, changed: plan.changed, generation: plan.generation, ...(plan.heldVersion ? { heldVersion: plan.heldVersion } : {}) };
  if (opts.dryRun) return { ...result, dryRun: true };
  const { namespace, name } = content.metadata;
  const out = deps.intake.upsert('local', { metadata: { namespace, name, generation: plan.generation }, spec: content.spec }, `local-${randomUUID()}`, 'local');
  if (!out.accepted) {
    const code = (SPEC_REASONS.has(out.reason) ? 'BadRequest' : out.reason) as ErrorCode;
    throw new ModeldError(code, `${plan.model}: ${out.reason}: ${out.message}`, { details: { reason: out.reason } });
  }
  return result;
}

export function deleteLocal(deps: Pick<AdminDeps, 'store' | 'intake'>, namespace: string, name: string): { model: string; deleted: true } {
  const key = `${namespace}/${name}`;
  const existing = deps.store.specs.get(namespace, name);
  if (!existing) throw new ModeldError('NotFound', `no spec for ${key} on this node`);
  if (existing.source === 'cloud') throw new ModeldError('ManagedByCloud', `${key} is managed by the cloud; delete it there`);
  deps.intake.remove(namespace, name, 'local');
  return { model: key, deleted: true };
}
