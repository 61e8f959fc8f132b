import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobStore } from '../../agent/fetch/blob-store.js';
import { fetchBlob, type FetchOptions, type FetchRequest } from '../../agent/fetch/download.js';
import type { FetchPolicy } from '../../agent/fetch/policy.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths, type StatePaths } from '../../agent/paths.js';
import { openStore, type Store } from '../../agent/store/index.js';
import { sleep } from '../../shared/sleep.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// Shared set-up for the fetch tests: a temp state dir with a real SQLite file, and a policy
// with short waits so retries do not slow the suite.

export function testPolicy(over: Partial<FetchPolicy> = {}): FetchPolicy {
  return {
    attempts: 5,
    backoffBaseMs: 10,
    backoffMaxMs: 100,
    connectTimeoutMs: 5_000,
    stallTimeoutMs: 20_000,
    lowSpeedBytesPerSec: 1024,
    lowSpeedWindowMs: 60_000,
    bandwidth: 0,
    reserveBytes: 0,
    maxBytes: 1024 ** 3,
    allowedSchemes: ['http', 'https'],
    allowedHosts: [],
    allowUnverified: false,
    progressIntervalMs: 0,
    mirrors: [],
    proxy: {},
    credentials: [],
    ...over,
  };
}

export interface Agentish {
  root: string;
  paths: StatePaths;
  store: Store;
  blobStore: BlobStore;
  policy: FetchPolicy;
  fetch(req: FetchRequest, opts?: FetchOptions): ReturnType<typeof fetchBlob>;
  /** Every backoff wait fetchBlob asked for, in ms. */
  waits: number[];
  /** Close the database and open a new one on the same directory, like a restarted process. */
  reopen(): void;
  close(): void;
}

export async function makeTempRoot(): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'modeld-fetch-'));
  return { root, cleanup: () => rm(root, { recursive: true, force: true }) };
}

export function openAgent(root: string, policy: FetchPolicy, dbPath?: string): Agentish {
  const paths = statePaths(root);
  const log = silentLogger();
  const a = {} as Agentish;
  const recordingSleep = (ms: number, signal?: AbortSignal) => {
    a.waits.push(ms);
    return sleep(ms, signal);
  };
  const open = () => {
    a.store = openStore(dbPath ?? paths.db);
    a.blobStore = new BlobStore({ paths, blobs: a.store.blobs, log });
  };
  open();
  Object.assign(a, {
    root,
    paths,
    policy,
    waits: [],
    fetch: (req: FetchRequest, opts?: FetchOptions) =>
      fetchBlob(req, { paths, blobStore: a.blobStore, downloads: a.store.downloads, policy: a.policy, log, sleep: recordingSleep }, opts),
    reopen: () => {
      a.store.close();
      open();
    },
    close: () => a.store.close(),
  });
  return a;
}

/** Polls until cond() is true: the shared wait, in this file's argument order. */
export const until = (cond: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> => waitFor(cond, timeoutMs, what);

/** The rejection of a promise, failing the test when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection, got success');
}
