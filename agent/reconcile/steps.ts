import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { BlobStore } from '../fetch/blob-store.js';
import { fetchBlob } from '../fetch/download.js';
import { tailFile } from '../fetch/tail-file.js';
import type { FetchPolicy } from '../fetch/policy.js';
import { detectArchive } from '../install/detect.js';
import { promoteTree, removeCurrent, removeTreeDir, swapCurrent } from '../install/layout.js';
import { rmTree } from '../install/rm-tree.js';
import { sameTree, toTree, type TreeRef } from '../install/tree-ref.js';
import { unpackArchive } from '../install/unpack.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import { runGc } from './gc-run.js';
import type { Step } from './plan.js';
import type { Reporter } from './report.js';
import type { ServingPort } from './serving-port.js';

// Executors: one per step kind (plan.ts says what each does). Each is idempotent, so a restart at
// any instant can simply plan again and run what is left.

export interface StepDeps {
  config: Config;
  paths: StatePaths;
  store: Store;
  log: Logger;
  blobStore: BlobStore;
  fetchPolicy: FetchPolicy;
  serving?: ServingPort;
  reporter: Reporter;
  /** Bytes received by a download, as they arrive (metrics). */
  onFetchBytes?: (namespace: string, name: string, bytes: number) => void;
}

export interface ModelRef {
  namespace: string;
  name: string;
  modelName: string;
  frameworkType?: string;
}

export interface StepContext {
  signal: AbortSignal;
  /** Digests learnt from unverified downloads in this run (downloadURL -> sha256). */
  learnt: Map<string, string>;
}

export async function runStep(step: Step, model: ModelRef, deps: StepDeps, ctx: StepContext): Promise<void> {
  const { namespace: ns, name } = model;
  const { paths, store, reporter } = deps;
  switch (step.kind) {
    case 'fetch': {
      reporter.report(ns, name, { phase: 'Downloading', progress: { bytes: 0 }, targetVersion: step.version });
      // With a known digest the archive is unpacked into staging while it downloads; it is
      // promoted only once the download verified. Without one, or if that fails, install unpacks after.
      const overlap = step.sha256 ? unpackWhileFetching(step.sha256, step.version, model, deps, ctx) : undefined;
      let result;
      let lastReported = 0;
      try {
        result = await fetchBlob(
          { url: step.url, sha256: step.sha256 },
          { paths, blobStore: deps.blobStore, downloads: store.downloads, policy: deps.fetchPolicy, log: deps.log.child({ model: `${ns}/${name}`, version: step.version }) },
          {
            signal: ctx.signal,
            onProgress: (p) => {
              if (p.bytes === lastReported) return; // the final call repeats the last chunk's figure
              lastReported = p.bytes;
              reporter.report(ns, name, { phase: 'Downloading', progress: p, targetVersion: step.version });
            },
            onBytes: deps.onFetchBytes && ((n) => deps.onFetchBytes!(ns, name, n)),
          },
        );
      } catch (err) {
        await overlap?.abandon(err);
        throw err;
      }
      if (!step.sha256) ctx.learnt.set(step.url, result.sha256);
      reporter.report(ns, name, { phase: 'Verifying', message: `sha256 ${result.sha256} verified (${result.size} bytes)`, targetVersion: step.version });
      await overlap?.finish(result.size);
      return;
    }
    case 'install': {
      const sha = step.sha256;
      if (!sha || !deps.blobStore.has(sha)) throw new ModeldError('InstallFailed', `archive for version ${step.version} is not in the store`, { retryable: true });
      reporter.report(ns, name, { phase: 'Installing', targetVersion: step.version });
      const archive = deps.blobStore.pathOf(sha);
      await detectArchive(archive);
      const tree = { version: step.version, sha256: sha };
      const staging = stagingFor(model, step.version, paths);
      try {
        await unpackArchive(archive, staging, unpackLimits(deps), { signal: ctx.signal });
        await promoteTree(staging, paths.treeDir(ns, name, tree), sha);
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
      recordInstalled(model, tree, deps);
      return;
    }
    case 'serve': {
      if (!deps.serving) return;
      reporter.report(ns, name, { phase: 'Starting', targetVersion: step.tree.version });
      await deps.serving.activate(
        {
          namespace: ns,
          name,
          modelName: model.modelName,
          version: step.tree.version,
          sha256: step.tree.sha256,
          versionDir: paths.treeDir(ns, name, step.tree),
          frameworkType: model.frameworkType,
          replicas: step.replicas,
        },
        { signal: ctx.signal },
      );
      return;
    }
    case 'point': {
      const before = store.models.get(ns, name);
      await swapCurrent(paths.modelDir(ns, name), step.tree);
      const old = toTree(before?.servingVersion, before?.servingSha256);
      const previous = old && !sameTree(old, step.tree) ? old : toTree(before?.previousVersion, before?.previousSha256);
      store.models.update(ns, name, {
        servingVersion: step.tree.version,
        servingSha256: step.tree.sha256,
        previousVersion: previous?.version,
        previousSha256: previous?.sha256,
        // An older tree may have just lost its protection: the plan's gc step keeps the store under its cap.
        gcDue: true,
      });
      return;
    }
    case 'gc': {
      // Store-wide and best effort: a gc that fails costs space, never the model's state.
      try {
        await runGc(deps);
      } catch (err) {
        deps.log.warn({ model: `${ns}/${name}`, err: (err as Error).message }, 'gc after a switch failed');
      }
      store.models.update(ns, name, { gcDue: false });
      return;
    }
    case 'stop':
      await deps.serving?.deactivate(ns, name);
      return;
    case 'remove': {
      reporter.report(ns, name, { phase: 'Deleting' });
      const dir = paths.modelDir(ns, name);
      // `current` first: from then on no version is pointed at, and each can go.
      await removeCurrent(dir);
      for (const v of store.versions.listFor(ns, name)) {
        const tree = toTree(v.version, v.sha256)!;
        await removeTreeDir(paths.treeDir(ns, name, tree));
        store.versions.delete(ns, name, tree);
      }
      await rmTree(dir);
      reporter.report(ns, name, { phase: 'Deleted' });
      store.models.delete(ns, name);
      return;
    }
  }
}

const stagingFor = (model: ModelRef, version: string, paths: StatePaths) =>
  join(paths.stagingDir, `${model.namespace}_${model.name}_${version}_${randomBytes(4).toString('hex')}`);

const unpackLimits = (deps: StepDeps) => ({ maxBytes: deps.config.limits.unpackedBytes, maxEntries: deps.config.limits.entries });

function recordInstalled(model: ModelRef, tree: Required<TreeRef>, deps: StepDeps): void {
  deps.store.versions.put({ namespace: model.namespace, name: model.name, version: tree.version, sha256: tree.sha256 });
  deps.store.blobs.touch(tree.sha256);
}

/**
 * Unpacks the download's bytes into staging as they land. `finish` (after the digest verified)
 * promotes the version; `abandon` (the download failed) drops it. Any trouble on this path only
 * costs the overlap: the install step then unpacks from the verified blob as usual.
 */
function unpackWhileFetching(sha256: string, version: string, model: ModelRef, deps: StepDeps, ctx: StepContext) {
  const log = deps.log.child({ model: `${model.namespace}/${model.name}`, version });
  const staging = stagingFor(model, version, deps.paths);
  const stop = new AbortController();
  const onAbort = () => stop.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  let settle!: { resolve: (size: number) => void; reject: (err: unknown) => void };
  const finished = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
  finished.catch(() => {});
  const unpacked = unpackArchive(tailFile(deps.paths.partial(sha256), finished, stop.signal), staging, unpackLimits(deps), { signal: stop.signal }).then(
    () => true,
    (err: unknown) => {
      if (!stop.signal.aborted) log.debug({ err: (err as Error).message }, 'unpacking during the download did not work out; unpacking after it');
      // The tail may be waiting for bytes the download has not written yet: end it, and close the file now.
      stop.abort(err);
      return false;
    },
  );
  const cleanup = async () => {
    ctx.signal.removeEventListener('abort', onAbort);
    await rm(staging, { recursive: true, force: true });
  };
  return {
    async abandon(err: unknown) {
      settle.reject(err);
      stop.abort(err);
      await unpacked;
      await cleanup();
    },
    async finish(size: number) {
      settle.resolve(size);
      try {
        if (!(await unpacked)) return;
        deps.reporter.report(model.namespace, model.name, { phase: 'Installing', targetVersion: version });
        const tree = { version, sha256 };
        await promoteTree(staging, deps.paths.treeDir(model.namespace, model.name, tree), sha256);
        recordInstalled(model, tree, deps);
      } finally {
        await cleanup();
      }
    },
  };
}
