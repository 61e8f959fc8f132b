import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
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

/** Listens on `path`; `what` names the socket in the error when another process holds it. */
export async function listenOwnerOnly(server: Server, path: string, o: { what: string; code: ErrorCode; dirMode: number }): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: o.dirMode });
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
