import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ModeldError } from '../errors.js';
import { normalizeSha256 } from '../fetch/blob-store.js';
import { ensureFreeSpace } from '../fetch/disk-space.js';
import { detectArchive } from '../install/detect.js';
import type { AdminDeps } from './context.js';

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
}

export interface SeedResult {
  sha256: string;
  size: number;
  path: string;
  alreadyPresent: boolean;
  /** Where the digest checked against came from, if one was. */
  verifiedAgainst?: 'argument' | 'spec';
}

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

  const st = await stat(req.path).catch((err: NodeJS.ErrnoException) => {
    throw new ModeldError('BadRequest', `cannot read ${req.path}: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`);
  });
  if (!st.isFile()) throw new ModeldError('BadRequest', `${req.path} is not a regular file`);
  await access(req.path, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
    throw new ModeldError('BadRequest', `cannot read ${req.path}: ${err.code ?? err.message}`);
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

  const r = await deps.blobStore.importFile(req.path, { expectedSha256: expected, onProgress: opts.onProgress, signal: opts.signal });
  const model = req.namespace && req.name ? { namespace: req.namespace, name: req.name } : undefined;
  deps.store.events.add({
    ...model,
    kind: 'Seeded',
    message: `archive ${req.path}${req.version ? ` (version ${req.version})` : ''} seeded as sha256 ${r.sha256}${r.alreadyPresent ? ' (already present)' : ''}`,
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
  return { sha256: r.sha256, size: r.size, path: r.path, alreadyPresent: r.alreadyPresent, verifiedAgainst };
}
