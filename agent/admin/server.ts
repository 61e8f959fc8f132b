import { createServer, type Server } from 'node:http';
import { closeOwnerOnly, listenOwnerOnly } from '../owner-socket.js';
import type { AdminDeps } from './context.js';
import { handle } from './handlers.js';

// The local admin API: HTTP+JSON over a unix socket that only the daemon's user (and root) may
// open (agent/owner-socket.ts), in a directory created 0700 when missing.

export interface AdminServerOptions {
  socketPath: string;
  maxBodyBytes?: number;
}

export class AdminServer {
  private server?: Server;

  constructor(
    private readonly deps: AdminDeps,
    private readonly opts: AdminServerOptions,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((req, res) => void handle(req, res, { deps: this.deps, maxBodyBytes: this.opts.maxBodyBytes ?? 1024 * 1024 }));
    server.requestTimeout = 0; // seed and verify may run long; the peer is local
    await listenOwnerOnly(server, this.opts.socketPath, { what: 'admin socket', code: 'AdminSocketInUse', dirMode: 0o700 });
    this.server = server;
    this.deps.log.info({ socket: this.opts.socketPath }, 'admin API listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await closeOwnerOnly(server, this.opts.socketPath);
  }
}
