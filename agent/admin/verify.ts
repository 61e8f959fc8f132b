import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncPath } from '../durable.js';
import { TRASH_PREFIX, readCurrent } from '../install/layout.js';
import { readMarker } from '../install/marker.js';
import { rmTree } from '../install/rm-tree.js';
import { treeDigest } from '../install/tree-digest.js';
import { sameTree, toTree, treeName } from '../install/tree-ref.js';
import { unpackArchive } from '../install/unpack.js';
import type { AdminDeps } from './context.js';

// `modeld verify`: re-hash every stored blob and every installed version; quarantine what is
// corrupt. A corrupt blob moves to blobs/quarantine/ (kept for inspection) and loses its row, so
// the next fetch downloads it again. A corrupt version loses its row and its directory so the
// runner reinstalls it from its blob — except a version `current` points at whose archive is
// not in the store: it is only reported (serving slightly damaged files beats serving nothing;
// the operator decides).

export interface VerifyFinding {
  kind: 'blob' | 'version';
  sha256?: string;
  namespace?: string;
  name?: string;
  version?: string;
  problem: string;
  action: 'quarantined' | 'removed-for-reinstall' | 'reported' | 'none';
}

export interface VerifyReport {
  blobsChecked: number;
  versionsChecked: number;
  /** Versions with no recorded tree digest and no archive to compare with. */
  unverifiable: Array<{ namespace: string; name: string; version: string }>;
  corrupt: VerifyFinding[];
  ok: boolean;
}

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function verifyStore(
  deps: Pick<AdminDeps, 'config' | 'paths' | 'store' | 'blobStore' | 'log' | 'kick'>,
  opts: { repair?: boolean; signal?: AbortSignal } = {},
): Promise<VerifyReport> {
  const { store, paths, blobStore } = deps;
  const repair = opts.repair ?? true;
  const log = deps.log.child({ part: 'verify' });
  const report: VerifyReport = { blobsChecked: 0, versionsChecked: 0, unverifiable: [], corrupt: [], ok: true };
  const badBlobs = new Set<string>();

  for (const b of store.blobs.list()) {
    opts.signal?.throwIfAborted();
    const path = blobStore.pathOf(b.sha256);
    report.blobsChecked++;
    let problem: string | undefined;
    const st = await stat(path).catch(() => undefined);
    if (!st) problem = 'file missing';
    else if (st.size !== b.size) problem = `size ${st.size}, recorded ${b.size}`;
    else {
      const actual = await fileSha256(path);
      if (actual !== b.sha256) problem = `content hashes to ${actual}`;
    }
    if (!problem) continue;
    if (!store.blobs.get(b.sha256)) continue; // removed meanwhile (gc in the daemon), not corrupt
    badBlobs.add(b.sha256);
    let action: VerifyFinding['action'] = 'reported';
    if (repair) {
      if (st) {
        const qdir = join(paths.root, 'blobs', 'quarantine');
        await mkdir(qdir, { recursive: true });
        await rename(path, join(qdir, `${b.sha256}-${Date.now()}`));
        await fsyncPath(dirname(path));
      }
      store.blobs.delete(b.sha256);
      action = 'quarantined';
    }
    log.error({ sha256: b.sha256, problem, action }, 'corrupt blob');
    report.corrupt.push({ kind: 'blob', sha256: b.sha256, problem, action });
  }

  const kicked = new Set<string>();
  for (const v of store.versions.list()) {
    opts.signal?.throwIfAborted();
    const tree = toTree(v.version, v.sha256)!;
    const dir = paths.treeDir(v.namespace, v.name, tree);
    const marker = await readMarker(dir);
    if (!marker) continue; // gone or incomplete: start-up recovery deals with those
    report.versionsChecked++;
    const sha = (marker.sha256 ?? v.sha256)?.toLowerCase();
    const blobOk = !!sha && !badBlobs.has(sha) && blobStore.has(sha);
    let expected = marker.tree;
    if (!expected && blobOk) expected = await treeOfArchive(deps, blobStore.pathOf(sha!), opts.signal);
    if (!expected) {
      report.unverifiable.push({ namespace: v.namespace, name: v.name, version: v.version });
      continue;
    }
    const actual = await treeDigest(dir).catch((err: Error) => `unreadable: ${err.message}`);
    if (actual === expected) continue;
    if (!(await readMarker(dir))) continue; // removed meanwhile (gc, a delete), not corrupt

    const model = `${v.namespace}/${v.name}`;
    const isCurrent = sameTree(await readCurrent(paths.modelDir(v.namespace, v.name)), tree);
    let action: VerifyFinding['action'] = 'reported';
    if (repair && (blobOk || !isCurrent)) {
      // Out of versions/ under a trash name (never half a version under its own name), row gone:
      // the planner sees it missing and installs it again from the blob if a spec still wants it.
      const trash = join(paths.versionsDir(v.namespace, v.name), `${TRASH_PREFIX}${treeName(tree)}-corrupt-${randomBytes(4).toString('hex')}`);
      await rename(dir, trash);
      await fsyncPath(paths.versionsDir(v.namespace, v.name));
      store.versions.delete(v.namespace, v.name, tree);
      await rmTree(trash);
      action = 'removed-for-reinstall';
      if (!kicked.has(model)) {
        kicked.add(model);
        deps.kick(v.namespace, v.name);
      }
    }
    const problem = actual.startsWith('unreadable') ? actual : 'files differ from what was installed';
    log.error({ model, version: v.version, problem, action, current: isCurrent }, 'corrupt installed version');
    store.events.add({ namespace: v.namespace, name: v.name, kind: 'Corrupt', message: `version ${v.version}: ${problem} (${action})` });
    report.corrupt.push({ kind: 'version', namespace: v.namespace, name: v.name, version: v.version, sha256: sha, problem, action });
  }
  report.ok = report.corrupt.length === 0;
  return report;
}

/** For versions promoted before tree digests existed: unpack the archive into staging and digest that. */
async function treeOfArchive(deps: Pick<AdminDeps, 'config' | 'paths'>, archive: string, signal?: AbortSignal): Promise<string | undefined> {
  const staging = join(deps.paths.stagingDir, `verify-${randomBytes(6).toString('hex')}`);
  try {
    await unpackArchive(archive, staging, { maxBytes: deps.config.limits.unpackedBytes, maxEntries: deps.config.limits.entries }, { signal });
    return await treeDigest(staging);
  } catch {
    return undefined;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
