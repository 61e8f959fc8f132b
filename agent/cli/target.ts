import { resolve } from 'node:path';
import { sleep } from '../../shared/sleep.js';
import { describeOwner, lockHolder, type LockOwner } from '../admin/state-lock.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import { statePaths } from '../paths.js';
import { AdminClient } from './admin-client.js';
import { migrateDirect, openDirect, openReadOnly, type Direct } from './direct.js';

// Where a command goes: the running daemon (its admin socket answers), or the state directory
// directly under the lock when no daemon runs. A daemon that holds the lock but does not answer
// is an error (exit 3), never a reason to write behind its back.

export type Target = { kind: 'daemon'; client: AdminClient } | ({ kind: 'direct' } & Direct);

/** How long a daemon that holds the state directory gets to start answering (it may be starting). */
const DAEMON_STARTING_MS = 10_000;

async function answering(config: Config): Promise<AdminClient | undefined> {
  const client = new AdminClient(config.admin.socket, config.admin.socketGroup);
  const health = await client.health();
  if (!health) return undefined;
  if (resolve(health.stateDir) !== resolve(config.stateDir)) {
    throw new ModeldError(
      'DaemonNotRunning',
      `the daemon on ${config.admin.socket} (pid ${health.pid}) manages ${health.stateDir}, not ${config.stateDir}: check --config`,
    );
  }
  return client;
}

function notAnswering(config: Config, holder: LockOwner): ModeldError {
  return new ModeldError('DaemonNotRunning', `${describeOwner(holder)} holds ${config.stateDir} but does not answer on ${config.admin.socket}`);
}

/**
 * The daemon's client when it answers for this state directory; undefined when no daemon runs.
 * A daemon that holds the lock but does not answer yet is waited for (it may be starting), then
 * DaemonNotRunning.
 */
export async function daemonClient(config: Config): Promise<AdminClient | undefined> {
  const lockFile = statePaths(config.stateDir).lockFile;
  const deadline = Date.now() + DAEMON_STARTING_MS;
  for (;;) {
    const client = await answering(config);
    if (client) return client;
    const holder = lockHolder(lockFile);
    if (holder?.kind !== 'daemon') return undefined;
    if (Date.now() > deadline) throw notAnswering(config, holder);
    await sleep(200);
  }
}

/** For commands that change state: the daemon if it runs, else the state directory under the lock. */
export async function writeTarget(config: Config, command: string): Promise<Target> {
  const deadline = Date.now() + DAEMON_STARTING_MS;
  for (;;) {
    const client = await daemonClient(config);
    if (client) return { kind: 'daemon', client };
    let direct: Direct;
    try {
      direct = openDirect(config, command);
    } catch (err) {
      // A daemon took the lock between our look and our try: it is starting; go through it.
      const owner = err instanceof ModeldError ? (err.details.owner as LockOwner | undefined) : undefined;
      if (owner?.kind !== 'daemon') throw err;
      if (Date.now() > deadline) throw notAnswering(config, owner);
      continue;
    }
    try {
      await migrateDirect(direct);
    } catch (err) {
      direct.close();
      throw err;
    }
    return { kind: 'direct', ...direct };
  }
}

/**
 * Runs `fn` on the target and always closes a direct one (the lock is released). The first
 * Ctrl-C aborts `signal` so `fn` can clean up (a seed removes its partial copy); a second exits.
 */
export async function withWriteTarget<T>(config: Config, command: string, fn: (t: Target, signal: AbortSignal) => Promise<T>): Promise<T> {
  const target = await writeTarget(config, command);
  const release = () => target.kind === 'direct' && target.close();
  const abort = new AbortController();
  const onSignal = () => {
    if (!abort.signal.aborted) return abort.abort(new ModeldError('Cancelled', 'interrupted'));
    release();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(target, abort.signal);
  } catch (err) {
    // However the interrupted work ended (an aborted request to the daemon, a cancelled copy), Ctrl-C is exit 130.
    if (abort.signal.aborted && !(err instanceof ModeldError && err.code === 'Cancelled')) throw new ModeldError('Cancelled', 'interrupted', { cause: err });
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    release();
  }
}

/** For commands that only read: the daemon when it answers, else the store read-only (`store` undefined: no state yet). */
export type ReadTarget = { kind: 'daemon'; client: AdminClient } | { kind: 'store'; store?: NonNullable<ReturnType<typeof openReadOnly>>['source']['store'] };

/** Runs `fn` on the read target; a daemon that holds the directory but does not answer: the store is read. */
export async function withReadTarget<T>(config: Config, fn: (t: ReadTarget) => Promise<T> | T): Promise<T> {
  const client = await daemonClient(config).catch((err: unknown) => {
    if (err instanceof ModeldError && err.code === 'DaemonNotRunning') return undefined;
    throw err;
  });
  if (client) return fn({ kind: 'daemon', client });
  const ro = openReadOnly(config);
  try {
    return await fn({ kind: 'store', store: ro?.source.store });
  } finally {
    ro?.close();
  }
}
