import { existsSync } from 'node:fs';
import { ModeldError } from '../errors.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import { specHash } from './spec-hash.js';

// `modeld rollback`: a hold on an installed version. The planner (chooseVersion) then serves the
// held version instead of the target through the usual blue/green start + switch, for as long as
// the spec stays the one the hold was made under; any spec change ends the hold.

export interface RollbackDeps {
  store: Pick<Store, 'specs' | 'models' | 'versions' | 'events'>;
  paths: StatePaths;
  kick(namespace: string, name: string, opts?: { cancel?: boolean }): void;
}

export interface RollbackResult {
  model: string;
  from?: string;
  heldVersion: string;
}

export function rollback(deps: RollbackDeps, namespace: string, name: string, to?: string): RollbackResult {
  const key = `${namespace}/${name}`;
  const desired = deps.store.specs.get(namespace, name);
  if (!desired) throw new ModeldError('NotFound', `no model ${key} on this node`);
  const model = deps.store.models.get(namespace, name);
  const version = to ?? model?.previousVersion;
  if (!version) throw new ModeldError('NoRollbackVersion', `${key} has no previous version to roll back to; name one with --to`);
  const installed = deps.store.versions.get(namespace, name, version) && existsSync(deps.paths.versionDir(namespace, name, version));
  if (!installed) {
    const have = deps.store.versions.listFor(namespace, name).map((v) => v.version);
    throw new ModeldError('NoRollbackVersion', `version ${version} of ${key} is not installed (installed: ${have.join(', ') || 'none'})`);
  }
  deps.store.models.update(namespace, name, { heldVersion: version, heldSpecHash: specHash(desired.spec) });
  deps.store.events.add({ namespace, name, kind: 'Rollback', message: `held at ${version} (was serving ${model?.servingVersion ?? 'nothing'}) until the spec changes` });
  deps.kick(namespace, name, { cancel: true });
  return { model: key, from: model?.servingVersion, heldVersion: version };
}
