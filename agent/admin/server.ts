import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { ModeldError } from '../errors.js';
import type { AdminDeps } from './context.js';
import { handle } from './handlers.js';

// The local admin API: HTTP+JSON over a unix socket that only the daemon's user (and root) may
// open — the socket is created 0600 (under a 0177 umask, so there is no window where it is wider)
// in a directory created 0700 when missing. A socket left by a killed daemon is removed at start;
// one that still answers belongs to a live daemon and is left alone.

export interface AdminServerOptions {
  socketPath: string;
  maxBodyBytes?: number;
}

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

export class AdminServer {
  private server?: Server;

  constructor(
    private readonly deps: AdminDeps,
    private readonly opts: AdminServerOptions,
  ) {}

  async listen(): Promise<void> {
    const path = this.opts.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const existing = (() => {
      try {
        return lstatSync(path);
      } catch {
        return undefined;
      }
    })();
    if (existing) {
      if (!existing.isSocket()) throw new ModeldError('AdminSocketInUse', `admin socket path ${path} exists and is not a socket; not touching it`);
      if (await socketAnswers(path)) throw new ModeldError('AdminSocketInUse', `another process answers on the admin socket ${path}`);
      unlinkSync(path); // stale: left by a daemon that was killed
    }
    const server = createServer((req, res) => void handle(req, res, { deps: this.deps, maxBodyBytes: this.opts.maxBodyBytes ?? 1024 * 1024 }));
    server.requestTimeout = 0; // seed and verify may run long; the peer is local
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
    this.server = server;
    this.deps.log.info({ socket: path }, 'admin API listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    try {
      unlinkSync(this.opts.socketPath);
    } catch {
      /* already gone */
    }
  }
}
