import type { ConfigView } from '../config/explain.js';
import type { Config } from '../config/schema.js';
import type { BlobStore } from '../fetch/blob-store.js';
import type { Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import type { Intake } from '../reconcile/intake.js';
import type { ServingPort } from '../reconcile/serving-port.js';
import type { Store } from '../store/index.js';

/**
 * What the admin operations work on. The daemon builds it from its Agent (kick = the runner's);
 * the CLI builds it on the state directory directly, under the state lock, when no daemon runs
 * (kick does nothing: `modeld run` reconciles every model when it starts).
 */
export interface AdminDeps {
  config: Config;
  paths: StatePaths;
  store: Store;
  blobStore: BlobStore;
  log: Logger;
  intake: Intake;
  serving?: ServingPort;
  kick(namespace: string, name: string, opts?: { cancel?: boolean }): void;
  /** True inside the daemon; false for the CLI on the state directory. */
  daemon: boolean;
  /** The daemon's configuration with each value's source, as it was loaded at start. */
  configView?: ConfigView;
}
