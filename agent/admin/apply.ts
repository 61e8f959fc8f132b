import { randomUUID } from 'node:crypto';
import { resolveTarget, specProblems, type ModelContent } from '../../shared/index.js';
import { fetchPolicyFromConfig } from '../fetch/policy.js';
import { checkUrl } from '../fetch/url-policy.js';
import { ModeldError, type ErrorCode } from '../errors.js';
import { selectsNode } from '../reconcile/selector.js';
import { specHash } from '../reconcile/spec-hash.js';
import type { AdminDeps } from './context.js';

// Local specs (`modeld apply` / `modeld delete`): desired state with source 'local', no cloud
// needed. The cloud's spec wins: a local apply over a cloud-managed model is refused
// (ManagedByCloud), and a cloud spec arriving for a locally applied model replaces it (intake
// records a CloudOverride event; status shows note CloudOverridesLocal). `modeld delete` removes
// local specs only.

export interface ApplyResult {
  model: string;
  changed: boolean;
  generation: number;
}

/** Refusals from intake that mean the user's file is wrong (exit code 2) rather than a conflict. */
const SPEC_REASONS = new Set(['InvalidSpec', 'TargetVersionNotInManifest', 'DuplicateVersion', 'EmptyManifest', 'MissingDigest', 'URLNotAllowed', 'BadMessage']);

export function applyLocal(deps: Pick<AdminDeps, 'config' | 'store' | 'intake'>, content: ModelContent): ApplyResult {
  const { namespace, name } = content.metadata;
  const key = `${namespace}/${name}`;
  // Refused here, before intake, so a bad local file leaves no trace (no status, no event).
  const problems = specProblems(content.spec, { requireDigest: !deps.config.allowUnverified });
  if (problems.length) throw new ModeldError('BadRequest', `${key}: ${problems[0].reason}: ${problems.map((p) => p.message).join('; ')}`);
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
  const same = existing && specHash(existing.spec) === specHash(content.spec);
  const generation = existing ? (same ? existing.generation : existing.generation + 1) : 1;
  const out = deps.intake.upsert('local', { metadata: { namespace, name, generation }, spec: content.spec }, `local-${randomUUID()}`, 'local');
  if (!out.accepted) {
    const code = (SPEC_REASONS.has(out.reason) ? 'BadRequest' : out.reason) as ErrorCode;
    throw new ModeldError(code, `${key}: ${out.reason}: ${out.message}`, { details: { reason: out.reason } });
  }
  return { model: key, changed: out.changed.length > 0, generation };
}

export function deleteLocal(deps: Pick<AdminDeps, 'store' | 'intake'>, namespace: string, name: string): { model: string; deleted: true } {
  const key = `${namespace}/${name}`;
  const existing = deps.store.specs.get(namespace, name);
  if (!existing) throw new ModeldError('NotFound', `no spec for ${key} on this node`);
  if (existing.source === 'cloud') throw new ModeldError('ManagedByCloud', `${key} is managed by the cloud; delete it there`);
  deps.intake.remove(namespace, name, 'local');
  return { model: key, deleted: true };
}
