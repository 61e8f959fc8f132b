import { createServer, type Server } from 'node:http';
import { closeOwnerOnly, listenOwnerOnly } from '../owner-socket.js';
import type { AdminDeps } from './context.js';
import { handle } from './handlers.js';

// The local admin API: HTTP+JSON over a unix socket that the daemon's user, root and the members
// of admin.socketGroup (modeld, when it exists) may open (agent/owner-socket.ts), in a directory
// created 0700 (0750 with that group) when missing.

export interface AdminServerOptions {
  socketPath: string;
  maxBodyBytes?: number;
  /** The group whose members may use the socket ('' or absent: owner only). */
  group?: string;
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
    const access = await listenOwnerOnly(server, this.opts.socketPath, { what: 'admin socket', code: 'AdminSocketInUse', dirMode: 0o700, group: this.opts.group });
    this.server = server;
    const mode = `0${access.mode.toString(8)}`;
    // No modeld group (a development machine): owner-only is expected, not worth a warning.
    const expected = access.groupMissing && this.opts.group === 'modeld';
    if (access.groupProblem && !expected) this.deps.log.warn({ socket: this.opts.socketPath, mode, problem: access.groupProblem }, 'admin socket is owner-only');
    this.deps.log.info({ socket: this.opts.socketPath, mode, group: access.group, ...(access.groupProblem ? { groupProblem: access.groupProblem } : {}) }, 'admin API listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await closeOwnerOnly(server, this.opts.socketPath);
  }
}
