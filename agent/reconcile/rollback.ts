import { existsSync } from 'node:fs';
import { VERSION_PATTERN, resolveTarget } from '../../shared/index.js';
import { ModeldError } from '../errors.js';
import { describeTree, sameTree, toTree, type TreeRef } from '../install/tree-ref.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import { specHash } from './spec-hash.js';

// `modeld rollback`: a hold on an installed tree. The planner (chooseTree) then serves the held
// tree instead of the target through the usual blue/green serve + point, for as long as the spec
// stays the one the hold was made under; any spec change ends the hold. A tree is a version and
// its archive's digest: after a republish, the previous tree may be the same version name.

export interface RollbackDeps {
  store: Pick<Store, 'specs' | 'models' | 'versions' | 'events'>;
  paths: StatePaths;
  kick(namespace: string, name: string, opts?: { cancel?: boolean }): void;
}

export interface RollbackResult {
  model: string;
  from?: string;
  heldVersion: string;
  heldSha256?: string;
}

/** `--to`: a version, or `<version>@<digest prefix>` to pick one of the trees of a republished version. */
export function parseRollbackTarget(to: string): { version: string; digestPrefix?: string } | undefined {
  const [version, digestPrefix, ...rest] = to.split('@');
  if (rest.length || !VERSION_PATTERN.test(version)) return undefined;
  if (digestPrefix !== undefined && !/^[0-9a-f]{1,64}$/i.test(digestPrefix)) return undefined;
  return { version, digestPrefix: digestPrefix?.toLowerCase() };
}

export function rollback(deps: RollbackDeps, namespace: string, name: string, to?: string): RollbackResult {
  const key = `${namespace}/${name}`;
  const desired = deps.store.specs.get(namespace, name);
  if (!desired) throw new ModeldError('NotFound', `no model ${key} on this node`);
  const model = deps.store.models.get(namespace, name);
  const serving = toTree(model?.servingVersion, model?.servingSha256);
  const installed = deps.store.versions
    .listFor(namespace, name)
    .map((v) => toTree(v.version, v.sha256)!)
    .filter((t) => existsSync(deps.paths.treeDir(namespace, name, t)));
  let tree: TreeRef | undefined;
  if (to === undefined) {
    tree = toTree(model?.previousVersion, model?.previousSha256);
    if (!tree) throw new ModeldError('NoRollbackVersion', `${key} has no previous version to roll back to; name one with --to`);
  } else {
    const wanted = parseRollbackTarget(to);
    if (!wanted) throw new ModeldError('BadRequest', `--to "${to.slice(0, 80)}" is not a version (or version@digest)`);
    const of = installed.filter((t) => t.version === wanted.version && (!wanted.digestPrefix || t.sha256?.startsWith(wanted.digestPrefix)));
    // A republished version has several trees: without a digest, the one that is not serving.
    const candidates = of.length > 1 ? of.filter((t) => !sameTree(t, serving)) : of;
    if (candidates.length > 1) {
      throw new ModeldError('NoRollbackVersion', `version ${to} of ${key} has several installed trees (${candidates.map(describeTree).join(', ')}); name one with --to <version>@<digest>`);
    }
    tree = candidates[0] ?? { version: wanted.version };
  }
  if (!installed.some((t) => sameTree(t, tree))) {
    throw new ModeldError('NoRollbackVersion', `version ${describeTree(tree)} of ${key} is not installed (installed: ${installed.map(describeTree).join(', ') || 'none'})`);
  }
  deps.store.models.update(namespace, name, { heldVersion: tree.version, heldSha256: tree.sha256, heldSpecHash: specHash(desired.spec) });
  deps.store.events.add({
    namespace,
    name,
    kind: 'Rollback',
    message: `held at version ${describeTree(tree)} (was serving ${serving ? describeTree(serving) : 'nothing'}) until the spec changes or \`modeld rollback --release\``,
  });
  deps.kick(namespace, name, { cancel: true });
  return { model: key, from: model?.servingVersion, heldVersion: tree.version, heldSha256: tree.sha256 };
}

export interface ReleaseResult {
  model: string;
  releasedVersion: string;
  /** What serves once the hold is gone: the spec's target. */
  targetVersion?: string;
}

/** `modeld rollback --release`: ends a hold in force; the target serves again (blue/green). NotHeld when there is none. */
export function releaseHold(deps: RollbackDeps, namespace: string, name: string): ReleaseResult {
  const key = `${namespace}/${name}`;
  const desired = deps.store.specs.get(namespace, name);
  if (!desired) throw new ModeldError('NotFound', `no model ${key} on this node`);
  const model = deps.store.models.get(namespace, name);
  // A hold made under an earlier spec already ended with that spec.
  if (!model?.heldVersion || model.heldSpecHash !== specHash(desired.spec)) throw new ModeldError('NotHeld', `${key} is not held by a rollback`);
  const held = toTree(model.heldVersion, model.heldSha256)!;
  deps.store.models.update(namespace, name, { heldVersion: undefined, heldSha256: undefined, heldSpecHash: undefined });
  const target = desired.spec.image ? undefined : resolveTarget(desired.spec)?.version;
  deps.store.events.add({ namespace, name, kind: 'RollbackReleased', message: `hold at version ${describeTree(held)} released: serving the target${target ? ` (${target})` : ''} again` });
  deps.kick(namespace, name, { cancel: true });
  return { model: key, releasedVersion: held.version, targetVersion: target };
}
