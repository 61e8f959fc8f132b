// Garbage collection under the store cap. planGc is pure: it only decides; the caller removes
// (removeTreeDir for installed trees, the blob store for blobs) and updates SQLite. A "version"
// here is one installed tree: a version and its archive's digest (tree-ref.ts).
//
// Order, stopping as soon as the total is at or under capBytes:
//   1. installed versions that are not protected, oldest installedAt first;
//   2. blobs that neither a protected version nor a wanted digest needs, least recently used first;
//   3. blobs whose version is still installed (protected or wanted): the unpacked copy stays, only
//      the ability to re-install without a download is lost; least recently used first.
// Never removed: a protected version (current, previous, the target being installed), and a wanted
// blob whose version is not installed (it is needed to install it). If the cap still cannot be
// met, overCap is true and the caller reports it; nothing protected is sacrificed.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface VersionRef {
  namespace: string;
  name: string;
  version: string;
  /** Which bytes of the version (undefined: a tree from before digests were recorded). */
  sha256?: string;
}

export interface GcInput {
  blobs: Array<{ sha256: string; size: number; lastUsedAt: number }>;
  versions: Array<VersionRef & { sha256?: string; sizeBytes: number; installedAt: number }>;
  /** current, previous, and the target being installed, of every model. */
  protectedVersions: VersionRef[];
  /** Digests of versions a spec still targets. */
  wantedBlobs: string[];
  capBytes: number;
}

export interface GcPlan {
  removeVersions: Array<VersionRef & { bytes: number }>;
  removeBlobs: Array<{ sha256: string; bytes: number }>;
  freedBytes: number;
  totalAfter: number;
  overCap: boolean;
}

const versionKey = (v: VersionRef) => `${v.namespace}\0${v.name}\0${v.version}`;
const refKey = (v: VersionRef) => `${versionKey(v)}\0${v.sha256?.toLowerCase() ?? ''}`;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

export function planGc(input: GcInput): GcPlan {
  // A protected ref without a digest protects every tree of its version: erring on keeping.
  const exact = new Set(input.protectedVersions.filter((v) => v.sha256).map(refKey));
  const anyTree = new Set(input.protectedVersions.filter((v) => !v.sha256).map(versionKey));
  const isProtected = (v: VersionRef) => exact.has(refKey(v)) || anyTree.has(versionKey(v));
  const wanted = new Set(input.wantedBlobs.map((d) => d.toLowerCase()));
  const totalBefore = sum(input.blobs.map((b) => b.size)) + sum(input.versions.map((v) => v.sizeBytes));
  let total = totalBefore;
  const over = () => total > input.capBytes;

  const removeVersions: GcPlan['removeVersions'] = [];
  const oldestFirst = input.versions
    .filter((v) => !isProtected(v))
    .sort((a, b) => a.installedAt - b.installedAt || refKey(a).localeCompare(refKey(b)));
  for (const v of oldestFirst) {
    if (!over()) break;
    removeVersions.push({ namespace: v.namespace, name: v.name, version: v.version, sha256: v.sha256, bytes: v.sizeBytes });
    total -= v.sizeBytes;
  }

  const removed = new Set(removeVersions.map(refKey));
  const kept = input.versions.filter((v) => !removed.has(refKey(v)));
  const digestsOf = (vs: typeof kept) => new Set(vs.flatMap((v) => (v.sha256 ? [v.sha256.toLowerCase()] : [])));
  const backsProtected = digestsOf(kept.filter(isProtected));
  const backsInstalled = digestsOf(kept);

  const lru = [...input.blobs].sort((a, b) => a.lastUsedAt - b.lastUsedAt || a.sha256.localeCompare(b.sha256));
  const removeBlobs: GcPlan['removeBlobs'] = [];
  const take = (pick: (digest: string) => boolean) => {
    for (const b of lru) {
      if (!over()) return;
      const d = b.sha256.toLowerCase();
      if (!pick(d) || removeBlobs.some((r) => r.sha256 === b.sha256)) continue;
      removeBlobs.push({ sha256: b.sha256, bytes: b.size });
      total -= b.size;
    }
  };
  take((d) => !wanted.has(d) && !backsProtected.has(d));
  take((d) => backsInstalled.has(d));

  return { removeVersions, removeBlobs, freedBytes: totalBefore - total, totalAfter: total, overCap: over() };
}

/** Bytes of regular files under `path` (apparent size; hard links counted once; symlinks not followed). */
export async function dirSize(path: string): Promise<number> {
  const seen = new Set<string>();
  const walk = async (p: string): Promise<number> => {
    const st = await lstat(p).catch(() => undefined);
    if (!st) return 0;
    if (st.isDirectory()) {
      let n = 0;
      for (const name of await readdir(p)) n += await walk(join(p, name));
      return n;
    }
    if (!st.isFile()) return 0;
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) return 0;
    seen.add(id);
    return st.size;
  };
  return walk(path);
}
