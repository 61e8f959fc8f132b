import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { DNS_LABEL } from '../../shared/names.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import { closeOwnerOnly, listenOwnerOnly } from '../owner-socket.js';
import { readBody } from '../runtime/read-body.js';
import type { RouteEvent, RouteRequest } from './protocol.js';
import type { RuntimeHost } from './runtime-host.js';

// The host's end of the control channel (protocol.ts): HTTP on a unix socket, mode 0600, in the
// state directory's run dir. Only the agent (same user) talks to it.

const MAX_BODY = 64 * 1024;

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

export class ControlServer {
  private server: Server | undefined;

  constructor(
    private readonly host: RuntimeHost,
    private readonly d: { socketPath: string; log: Logger; onShutdown: () => void },
  ) {}

  async listen(): Promise<void> {
    const path = this.d.socketPath;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        const status = err instanceof ModeldError && err.code === 'BadRequest' ? 400 : (err as { status?: number }).status ?? 500;
        if (res.headersSent) return void res.destroy();
        json(res, status, { error: (err as Error).message });
      });
    });
    server.requestTimeout = 0; // a load may take long; the peer is local
    await listenOwnerOnly(server, path, { what: 'runtime host socket', code: 'StartFailed', dirMode: 0o750 });
    this.server = server;
    this.d.log.info({ socket: path }, 'control socket listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await closeOwnerOnly(server, this.d.socketPath);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/state') return json(res, 200, this.host.state());
    if (req.method === 'GET' && path === '/metrics') {
      const text = await this.host.registry.metrics();
      res.writeHead(200, { 'content-type': this.host.registry.contentType, 'content-length': Buffer.byteLength(text) });
      return void res.end(text);
    }
    if (req.method === 'POST' && path === '/hang-seen') {
      this.host.clearHang();
      return json(res, 200, { ok: true });
    }
    if (req.method === 'POST' && path === '/shutdown') {
      json(res, 200, { stopping: true });
      this.d.onShutdown();
      return;
    }
    if (req.method === 'POST' && path === '/routes') {
      let body: RouteRequest;
      try {
        body = JSON.parse((await readBody(req, MAX_BODY)).toString('utf8')) as RouteRequest;
      } catch (err) {
        throw new ModeldError('BadRequest', `route request is not valid JSON: ${(err as Error).message}`);
      }
      if (typeof body !== 'object' || body === null) throw new ModeldError('BadRequest', 'route request must be a JSON object');
      return this.stream(res, (emit) => this.host.apply(body, emit));
    }
    const m = /^\/routes\/([^/]+)\/([^/]+)$/.exec(path);
    if (req.method === 'DELETE' && m && DNS_LABEL.test(m[1]) && DNS_LABEL.test(m[2])) {
      const drain = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('drainTimeoutMs') ?? 0);
      return this.stream(res, (emit) => this.host.remove(m[1], m[2], Number.isInteger(drain) && drain >= 0 ? drain : 0, emit));
    }
    json(res, 404, { error: `no route for ${req.method} ${path}` });
  }

  /** One JSON line per step; the host goes on with the change if the agent hangs up. */
  private async stream(res: ServerResponse, run: (emit: (e: RouteEvent) => void) => Promise<void>) {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    await run((e) => {
      if (!res.destroyed) res.write(`${JSON.stringify(e)}\n`);
    });
    res.end();
  }
}
