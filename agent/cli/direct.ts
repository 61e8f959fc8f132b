import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import type { AdminDeps } from '../admin/context.js';
import { acquireStateLock } from '../admin/state-lock.js';
import type { StatusSource } from '../admin/status-view.js';
import type { Config } from '../config/schema.js';
import { BlobStore } from '../fetch/blob-store.js';
import { fetchPolicyFromConfig } from '../fetch/policy.js';
import { migrateLegacyTrees } from '../install/migrate-layout.js';
import { checkUrl } from '../fetch/url-policy.js';
import { createLogger } from '../log.js';
import { statePaths } from '../paths.js';
import { Intake } from '../reconcile/intake.js';
import { Reporter } from '../reconcile/report.js';
import { BlobTable } from '../store/blobs.js';
import { EventTable } from '../store/events.js';
import { openStore } from '../store/index.js';
import { ModelTable } from '../store/models.js';
import { SpecTable } from '../store/specs.js';
import { VersionTable } from '../store/versions.js';

// The CLI on the state directory itself, for when no daemon runs: writes under the state lock
// (`modeld run` refuses to start meanwhile); reads without it, from a connection that never writes.

export interface Direct {
  deps: AdminDeps;
  close(): void;
}

/** Takes the state lock (StateLocked if held) and opens the store for writing. */
export function openDirect(config: Config, command: string): Direct {
  const paths = statePaths(config.stateDir);
  mkdirSync(paths.root, { recursive: true, mode: 0o750 });
  const lock = acquireStateLock(paths.lockFile, { kind: 'cli', command });
  try {
    const store = openStore(paths.db);
    // Errors only, on stderr (stdout is the command's answer; refusals come back as one-line errors).
    const log = createLogger({ level: 'error', destination: process.stderr });
    const blobStore = new BlobStore({ paths, blobs: store.blobs, log });
    const policy = fetchPolicyFromConfig(config);
    // Statuses go to the outbox; the daemon publishes them when it next connects.
    const reporter = new Reporter({ config, store, log, enqueue: (topic, payload) => void store.outbox.add(topic, payload) });
    const noKick = () => {}; // `modeld run` reconciles every model when it starts
    const intake = new Intake({ config, store, log, reporter, checkUrl: (url) => void checkUrl(url, policy), kick: noKick });
    let closed = false;
    return {
      deps: { config, paths, store, blobStore, log, intake, kick: noKick, daemon: false },
      close() {
        if (closed) return;
        closed = true;
        store.close();
        lock.release();
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/**
 * The move to digest-keyed trees that `modeld run` makes at start (install/migrate-layout.ts),
 * made before the CLI writes a state directory no daemon has run on since the upgrade, so both
 * see the same trees. Nothing to do (and nothing changed) on a migrated directory.
 */
export async function migrateDirect(direct: Direct): Promise<void> {
  const { paths, store, log } = direct.deps;
  await migrateLegacyTrees(paths, {
    recordedDigest: (namespace, name, version) => store.versions.listFor(namespace, name).find((v) => v.version === version && v.sha256)?.sha256,
    log,
  });
}

/** Read-only tables for `modeld status` without a daemon; undefined when there is no state yet. */
export function openReadOnly(config: Config): { source: StatusSource & { store: { blobs: BlobTable } }; close(): void } | undefined {
  const paths = statePaths(config.stateDir);
  if (!existsSync(paths.db)) return undefined;
  // A read-only connection leaves -wal and -shm files behind (it may not remove them); a
  // connection that may write but is told never to does not: the last to close removes them, so
  // reading leaves the state directory as it was. Read-only when this user may not write.
  let db: Database.Database;
  try {
    db = new Database(paths.db, { fileMustExist: true, timeout: 10_000 });
    db.pragma('query_only = ON');
  } catch {
    db = new Database(paths.db, { readonly: true, fileMustExist: true, timeout: 10_000 });
  }
  return {
    source: { store: { specs: new SpecTable(db), models: new ModelTable(db), versions: new VersionTable(db), events: new EventTable(db), blobs: new BlobTable(db) } },
    close: () => db.close(),
  };
}
