import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { BlobStore } from '../fetch/blob-store.js';
import { freeBytes } from '../fetch/disk-space.js';
import { fetchBlob } from '../fetch/download.js';
import type { FetchPolicy } from '../fetch/policy.js';
import { detectArchive } from '../install/detect.js';
import { promoteTree, removeCurrent, removeTreeDir, swapCurrent } from '../install/layout.js';
import { rmTree } from '../install/rm-tree.js';
import { sameTree, toTree, type TreeRef } from '../install/tree-ref.js';
import { unpackArchive, type UnpackLimits } from '../install/unpack.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';
import { runGc } from './gc-run.js';
import { WAITING_FOR_SLOT, type NodeLimits, type SlotKind } from './node-limits.js';
import { unpackWhileFetching } from './overlap-unpack.js';
import type { Step } from './plan.js';
import type { Reporter } from './report.js';
import type { ServingPort } from './serving-port.js';
import { startVersion } from './start-version.js';

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
  /** Node-wide slots for downloads, installs and starts, and the one bandwidth budget (built once in main.ts). */
  limits: NodeLimits;
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

/** The node-wide slot a step holds while it runs (the start step takes its own: start-version.ts). */
const SLOTS: Partial<Record<Step['kind'], { kind: SlotKind; phase: 'Downloading' | 'Installing' }>> = {
  fetch: { kind: 'fetch', phase: 'Downloading' },
  install: { kind: 'install', phase: 'Installing' },
};

export async function runStep(step: Step, model: ModelRef, deps: StepDeps, ctx: StepContext): Promise<void> {
  const slot = SLOTS[step.kind];
  if (!slot) return execute(step, model, deps, ctx);
  const targetVersion = 'version' in step ? step.version : undefined;
  await deps.limits.withSlot(slot.kind, () => execute(step, model, deps, ctx), {
    signal: ctx.signal,
    onWait: (message) => deps.reporter.report(model.namespace, model.name, { phase: slot.phase, reason: WAITING_FOR_SLOT, message, targetVersion }),
  });
}

async function execute(step: Step, model: ModelRef, deps: StepDeps, ctx: StepContext): Promise<void> {
  const { namespace: ns, name } = model;
  const { paths, store, reporter } = deps;
  switch (step.kind) {
    case 'fetch': {
      reporter.report(ns, name, { phase: 'Downloading', progress: { bytes: 0 }, targetVersion: step.version });
      // With a known digest the archive is unpacked into staging while it downloads; it is
      // promoted only once the download verified. Without one, or if that fails, install unpacks after.
      const overlap = step.sha256
        ? unpackWhileFetching({
            partialPath: paths.partial(step.sha256),
            sha256: step.sha256,
            staging: stagingFor(model, step.version, paths),
            log: deps.log.child({ model: `${ns}/${name}`, version: step.version }),
            signal: ctx.signal,
            limits: (pending) => unpackLimits(deps, pending),
          })
        : undefined;
      let result;
      let lastReported = 0;
      try {
        result = await fetchBlob(
          { url: step.url, sha256: step.sha256 },
          { paths, blobStore: deps.blobStore, downloads: store.downloads, policy: deps.fetchPolicy, throttle: deps.limits.bandwidth, log: deps.log.child({ model: `${ns}/${name}`, version: step.version }) },
          {
            signal: ctx.signal,
            onProgress: (p) => {
              overlap?.progress(p);
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
      const outcome = await overlap?.finish(result.size, result.path, async (staging) => {
        reporter.report(ns, name, { phase: 'Installing', targetVersion: step.version });
        const tree = { version: step.version, sha256: result.sha256 };
        await promoteTree(staging, paths.treeDir(ns, name, tree), result.sha256);
        recordInstalled(model, tree, deps);
      });
      // Refused while it downloaded, and those were the verified bytes: not unpacked a second time.
      if (outcome?.kind === 'refused') throw outcome.error;
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
        await unpackArchive(archive, staging, await unpackLimits(deps), { signal: ctx.signal });
        await promoteTree(staging, paths.treeDir(ns, name, tree), sha);
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
      recordInstalled(model, tree, deps);
      return;
    }
    case 'serve': {
      if (!deps.serving) return;
      await startVersion(
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
        { ...deps, serving: deps.serving },
        ctx.signal,
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

/**
 * What an unpack may write: the configured limits, and the disk's free space less
 * fetch.reserveBytes — measured now, less `pendingBytes` still to come (the rest of a download
 * running beside an overlapped unpack). store.capBytes is gc's target, not a limit on one tree:
 * gc never removes what serves, so a store may stand above its cap.
 */
async function unpackLimits(deps: StepDeps, pendingBytes: () => number = () => 0): Promise<UnpackLimits> {
  const { limits, fetch } = deps.config;
  const free = await freeBytes(deps.paths.stagingDir).catch(() => Infinity);
  return {
    maxBytes: limits.unpackedBytes,
    maxEntries: limits.entries,
    maxRatio: limits.compressionRatio,
    roomBytes: () => free - fetch.reserveBytes - pendingBytes(),
  };
}

function recordInstalled(model: ModelRef, tree: Required<TreeRef>, deps: StepDeps): void {
  deps.store.versions.put({ namespace: model.namespace, name: model.name, version: tree.version, sha256: tree.sha256 });
  deps.store.blobs.touch(tree.sha256);
}
