import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { userName } from '../accounts.js';
import { ModeldError } from '../errors.js';
import { digestMismatch, normalizeSha256 } from '../fetch/blob-store.js';
import { ensureFreeSpace } from '../fetch/disk-space.js';
import { detectArchive } from '../install/detect.js';
import type { AdminDeps } from './context.js';
import { seededDigest, seedMessage } from './seeded.js';

// Offline pre-seeding: an archive copied into the content-addressed store, verified, so a spec
// naming its digest needs no download. Only one process writes the store: the daemon when it
// runs (POST /v1/seed), else the CLI under the state lock.

export interface SeedRequest {
  /** Absolute path, readable by whoever imports it (the daemon's user when it runs). */
  path: string;
  sha256?: string;
  namespace?: string;
  name?: string;
  version?: string;
  /** Other bytes than the ones seeded before under this name and version are refused unless set. */
  replace?: boolean;
}

export interface SeedResult {
  sha256: string;
  size: number;
  path: string;
  alreadyPresent: boolean;
  /** Where the digest checked against came from, if one was. */
  verifiedAgainst?: 'argument' | 'spec' | 'seed';
}

/** Who must be able to read the archive: the daemon's user imports it (root's CLI runs as that user too). */
const readableBy = (err: NodeJS.ErrnoException) =>
  err.code === 'EACCES' || err.code === 'EPERM' ? ` (it is read as ${userName(process.getuid?.() ?? 0)}: make it readable by that user, e.g. copy it to /var/tmp)` : '';

export async function seedArchive(
  deps: Pick<AdminDeps, 'config' | 'paths' | 'store' | 'blobStore' | 'kick' | 'log'>,
  req: SeedRequest,
  opts: { onProgress?: (bytes: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<SeedResult> {
  if (typeof req.path !== 'string' || !isAbsolute(req.path)) throw new ModeldError('BadRequest', 'path must be an absolute file path');
  let expected: string | undefined;
  let verifiedAgainst: SeedResult['verifiedAgainst'];
  if (req.sha256 !== undefined) {
    try {
      expected = normalizeSha256(req.sha256);
    } catch (err) {
      throw new ModeldError('BadRequest', `--sha256: ${(err as Error).message}`);
    }
    verifiedAgainst = 'argument';
  }
  // The spec already names a digest for this version: the seed must be that archive.
  const spec = req.namespace && req.name ? deps.store.specs.get(req.namespace, req.name) : undefined;
  const specSha = spec?.spec.manifest?.find((m) => m.version === req.version)?.sha256sum?.toLowerCase();
  if (specSha) {
    if (expected && expected !== specSha) {
      throw new ModeldError('DigestMismatch', `--sha256 ${expected} differs from the digest the spec of ${req.namespace}/${req.name} names for version ${req.version} (${specSha})`);
    }
    expected ??= specSha;
    verifiedAgainst ??= 'spec';
  }
  // Seeded before under this name and version: the same bytes again are fine, others are a
  // mistake (a wrong stick, a rebuilt archive) unless --replace says it is a republish.
  const seeded = req.namespace && req.name && req.version && !req.replace ? seededDigest(deps.store, req.namespace, req.name, req.version) : undefined;
  const conflict = (other: string) =>
    new ModeldError(
      'SeedConflict',
      `version ${req.version} of ${req.namespace}/${req.name} was seeded as sha256 ${seeded}; this archive is sha256 ${other}. Seed it under another version, or pass --replace`,
    );
  if (seeded && expected && expected !== seeded) throw conflict(expected);

  const st = await stat(req.path).catch((err: NodeJS.ErrnoException) => {
    throw new ModeldError('BadRequest', `cannot read ${req.path}: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}${readableBy(err)}`);
  });
  if (!st.isFile()) throw new ModeldError('BadRequest', `${req.path} is not a regular file`);
  await access(req.path, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
    throw new ModeldError('BadRequest', `cannot read ${req.path}: ${err.code ?? err.message}${readableBy(err)}`);
  });
  if (st.size > deps.config.limits.archiveBytes) {
    throw new ModeldError('BadRequest', `${req.path} is ${st.size} bytes, over limits.archiveBytes (${deps.config.limits.archiveBytes})`);
  }
  try {
    await detectArchive(req.path);
  } catch (err) {
    const e = err as ModeldError;
    throw new ModeldError('BadRequest', `${req.path}: ${e.code === 'UnsupportedArchive' ? e.message : `cannot read: ${e.message}`}`);
  }
  await ensureFreeSpace(deps.paths.root, st.size + deps.config.fetch.reserveBytes, `seeding ${req.path}`);

  // The store skips the copy of an archive it already has: the file must still be those bytes.
  if (seeded || (expected && deps.blobStore.has(expected))) {
    const actual = await fileSha256(req.path, opts.signal);
    if (seeded && actual !== seeded) throw conflict(actual);
    if (expected && actual !== expected) throw digestMismatch(expected, actual, req.path);
  }
  const r = await deps.blobStore.importFile(req.path, { expectedSha256: expected ?? seeded, onProgress: opts.onProgress, signal: opts.signal });
  const model = req.namespace && req.name ? { namespace: req.namespace, name: req.name } : undefined;
  deps.store.events.add({
    ...model,
    kind: 'Seeded',
    message: seedMessage(req.path, req.version, r.sha256, r.alreadyPresent),
  });
  deps.log.info({ sha256: r.sha256, size: r.size, path: req.path, model: model && `${model.namespace}/${model.name}`, version: req.version }, 'archive seeded');
  if (model) {
    // Seeding is the remedy for a failed download: a failure of this very archive is forgotten,
    // so the runner tries again now (from the store) instead of at its next retry.
    const m = deps.store.models.get(model.namespace, model.name);
    const wanted = spec?.spec.manifest?.find((e) => e.version === req.version)?.sha256sum?.toLowerCase();
    if (m?.failedVersion === req.version && wanted === r.sha256 && (m?.failedSha256 ?? r.sha256) === r.sha256) {
      deps.store.models.update(model.namespace, model.name, { failedVersion: undefined, failedSha256: undefined, failedSpecHash: undefined, failedReason: undefined, failedMessage: undefined });
    }
    deps.kick(model.namespace, model.name);
  }
  return { sha256: r.sha256, size: r.size, path: r.path, alreadyPresent: r.alreadyPresent, verifiedAgainst: verifiedAgainst ?? (seeded ? 'seed' : undefined) };
}

async function fileSha256(path: string, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024, signal })) h.update(chunk as Buffer);
  } catch (err) {
    if (signal?.aborted) throw new ModeldError('Cancelled', `seed of ${path} cancelled`, { cause: err });
    throw err;
  }
  return h.digest('hex');
}
