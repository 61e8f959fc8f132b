// An installed tree is named by its version AND the sha256 of the archive it was unpacked from:
// models/<ns>/<name>/versions/<version>@<sha256>/. A version republished with other bytes is
// then another tree, installed beside the one serving, and `current` names exactly the bytes
// it holds. Version names cannot contain '@' (VERSION_PATTERN), so the name parses back.
//
// A tree without a recorded digest keeps its old name, versions/<version>/: only state
// directories from before digests were recorded can hold one (see migrate-layout.ts).
import { VERSION_PATTERN } from '../../shared/index.js';
import { ModeldError } from '../errors.js';

export interface TreeRef {
  version: string;
  /** sha256 of the archive (lowercase hex); undefined for a legacy tree whose digest was never recorded. */
  sha256?: string;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The same tree: same version, same digest (an unknown digest equals only an unknown one). */
export const sameTree = (a: TreeRef | undefined, b: TreeRef | undefined): boolean =>
  a !== undefined && b !== undefined && a.version === b.version && (a.sha256 ?? '') === (b.sha256 ?? '');

/** The directory name under versions/. */
export function treeName(tree: TreeRef): string {
  if (!VERSION_PATTERN.test(tree.version)) throw new ModeldError('Internal', `not a usable version directory name: '${tree.version}'`);
  if (tree.sha256 !== undefined && !SHA256.test(tree.sha256)) throw new ModeldError('Internal', `not a sha256 digest: '${tree.sha256}'`);
  return tree.sha256 ? `${tree.version}@${tree.sha256}` : tree.version;
}

/** The tree a directory name under versions/ stands for; undefined for anything else (trash, debris, foreign names). */
export function parseTreeName(name: string): TreeRef | undefined {
  const at = name.indexOf('@');
  const version = at < 0 ? name : name.slice(0, at);
  const sha256 = at < 0 ? undefined : name.slice(at + 1);
  if (!VERSION_PATTERN.test(version) || (sha256 !== undefined && !SHA256.test(sha256))) return undefined;
  return sha256 ? { version, sha256 } : { version };
}

/** For logs and messages: `1@3bf4c07e9f5f` (the digest shortened), or `1` for a legacy tree. */
export const describeTree = (tree: TreeRef): string => (tree.sha256 ? `${tree.version}@${tree.sha256.slice(0, 12)}` : tree.version);

/** The tree a (version, digest) pair of a row names; undefined when no version is recorded. */
export const toTree = (version: string | undefined, sha256: string | undefined): TreeRef | undefined =>
  version === undefined ? undefined : sha256 ? { version, sha256: sha256.toLowerCase() } : { version };

/** Whether an installed tree's row is the tree a models row records as (version, digest). */
export const isTreeOf = (row: { version: string; sha256?: string }, version: string | undefined, sha256: string | undefined): boolean =>
  sameTree(toTree(row.version, row.sha256), toTree(version, sha256));
