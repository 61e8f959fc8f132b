import { chmodSync, chownSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { groupBy } from './accounts.js';
import { ModeldError, type ErrorCode } from './errors.js';

// An HTTP server on a unix socket only its user (and root) may open: the admin API and the runtime
// host's control channel. The socket is created 0600 under a 0177 umask (no window where it is
// wider); a socket left by a killed process is removed at start, one that still answers belongs to
// a live process and is left alone.

/** Whether something accepts connections on the unix socket at `path`. */
export function socketAnswers(path: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ path });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** How the socket ended up: its mode, and the group that may use it (undefined: owner only) or why none. */
export interface SocketAccess {
  mode: number;
  group?: string;
  groupProblem?: string;
  /** The group asked for does not exist. */
  groupMissing?: boolean;
}

/**
 * Listens on `path`; `what` names the socket in the error when another process holds it. With
 * `group` (when that group exists and this user may give files to it) the socket is 0660 for
 * that group, and a directory created for it 0750 with that group.
 */
export async function listenOwnerOnly(server: Server, path: string, o: { what: string; code: ErrorCode; dirMode: number; group?: string }): Promise<SocketAccess> {
  const group = o.group ? groupBy({ name: o.group }) : undefined;
  const created = mkdirSync(dirname(path), { recursive: true, mode: group ? o.dirMode | 0o050 : o.dirMode });
  if (created && group) {
    try {
      chownSync(dirname(path), -1, group.gid);
    } catch {
      /* reported with the socket's own chown below */
    }
  }
  let existing;
  try {
    existing = lstatSync(path);
  } catch {
    /* none */
  }
  if (existing) {
    if (!existing.isSocket()) throw new ModeldError(o.code, `${o.what} path ${path} exists and is not a socket; not touching it`);
    if (await socketAnswers(path)) throw new ModeldError(o.code, `another process answers on the ${o.what} ${path}`);
    unlinkSync(path); // stale: left by a process that was killed
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const old = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  chmodSync(path, 0o600);
  if (!o.group) return { mode: 0o600 };
  if (!group) return { mode: 0o600, groupProblem: `no group ${o.group} on this system`, groupMissing: true };
  try {
    // Group first, then the mode: never a moment where another group may connect.
    chownSync(path, -1, group.gid);
    chmodSync(path, 0o660);
    return { mode: 0o660, group: group.name };
  } catch (err) {
    return { mode: 0o600, groupProblem: `cannot give it to group ${group.name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (this user is not in it?)` };
  }
}

/** Stops `server` (dropping its connections) and removes its socket file. */
export async function closeOwnerOnly(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}
