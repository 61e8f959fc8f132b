import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { networkInterfaces } from 'node:os';
import { Transform, type Readable } from 'node:stream';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Instance } from './instance.js';

// The node's one inference endpoint: /v2/models/<modelName>/... goes to that model's ready
// instances (least requests in flight), bodies streamed both ways. The route table is swapped
// in one assignment, so a request is routed either to the old version or to the new one.

/** What the gateway routes to: one model version's instances (an InstanceGroup). */
export interface RouteTarget {
  readonly namespace: string;
  readonly name: string;
  readonly modelName: string;
  readonly version: string;
  ready(): Instance[];
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'host']);

function upstreamHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

function downstreamHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  return out;
}

function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra });
  res.end(text);
}

const oipError = (res: ServerResponse, status: number, message: string, extra?: Record<string, string>) => sendJson(res, status, { error: message }, extra);

class BodyTooLarge extends Error {}

/** Counts a body of unknown length and errors past `limit`. */
function limitBody(src: Readable, limit: number): Readable {
  let seen = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > limit) cb(new BodyTooLarge(`request body is over the limit of ${limit} bytes`));
      else cb(null, chunk);
    },
  });
  src.on('error', (e) => t.destroy(e));
  return src.pipe(t);
}

/** The first non-internal IPv4 address of this host, or 127.0.0.1. */
export function detectAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export class Gateway {
  private readonly routes = new Map<string, RouteTarget>();
  private server: Server | undefined;
  private boundPort = 0;

  constructor(private readonly d: { config: Config; log: Logger }) {}

  async listen(): Promise<void> {
    const { bind, port } = this.d.config.gateway;
    const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.handle(req, res));
    server.headersTimeout = 60_000;
    server.requestTimeout = 0; // inference may be slow; the runtime bounds it
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new ModeldError('StartFailed', `gateway cannot listen on ${bind}:${port}: ${err.message}`, { cause: err })));
      server.listen(port, bind, () => resolve());
    });
    server.on('error', (err) => this.d.log.error({ err: err.message }, 'gateway error'));
    this.server = server;
    this.boundPort = (server.address() as { port: number }).port;
    this.d.log.info({ bind, port: this.boundPort }, 'gateway listening');
  }

  get port(): number {
    return this.boundPort;
  }

  /** Routes `modelName` to `target` from the next request on (one assignment: atomic). */
  setRoute(modelName: string, target: RouteTarget): void {
    this.routes.set(modelName, target);
  }

  /** Unroutes `modelName` (only if it still points at `target`, when given). */
  removeRoute(modelName: string, target?: RouteTarget): void {
    if (!target || this.routes.get(modelName) === target) this.routes.delete(modelName);
  }

  route(modelName: string): RouteTarget | undefined {
    return this.routes.get(modelName);
  }

  /** Base URL of the gateway as other hosts reach it. */
  baseUrl(): string {
    const { address } = this.d.config.node;
    const bind = this.d.config.gateway.bind;
    const host = address || (bind && bind !== '0.0.0.0' && bind !== '::' ? bind : detectAddress());
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.boundPort}`;
  }

  /** status.url for a model: its OIP endpoint through this gateway. */
  urlFor(modelName: string): string {
    return `${this.baseUrl()}/v2/models/${encodeURIComponent(modelName)}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    try {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      if (path.startsWith('/v2/models/')) return this.proxy(req, res, path);
      if (path === '/v2/health/live' || path === '/v2/health/ready') return sendJson(res, 200, { [path.endsWith('live') ? 'live' : 'ready']: true });
      if (path === '/v2/models') {
        return sendJson(res, 200, {
          models: [...this.routes.entries()].map(([name, t]) => ({
            name,
            version: t.version,
            namespace: t.namespace,
            resource: t.name,
            state: t.ready().length > 0 ? 'READY' : 'UNAVAILABLE',
          })),
        });
      }
      if (path === '/v2') return sendJson(res, 200, { name: 'modeld', version: '1', extensions: [] });
      oipError(res, 404, `no route for ${req.method} ${path}`);
    } catch (err) {
      this.d.log.error({ err: (err as Error).message }, 'gateway request failed');
      oipError(res, 500, 'internal gateway error');
    }
  }

  private proxy(req: IncomingMessage, res: ServerResponse, path: string): void {
    const end = path.indexOf('/', 11);
    let modelName: string;
    try {
      modelName = decodeURIComponent(end < 0 ? path.slice(11) : path.slice(11, end));
    } catch {
      return oipError(res, 400, 'bad model name in path');
    }
    const target = this.routes.get(modelName);
    if (!target) return oipError(res, 404, `unknown model "${modelName.slice(0, 128)}"`);

    const limit = this.d.config.gateway.maxBodyBytes;
    const declared = req.headers['content-length'];
    const hasBody = declared !== undefined ? declared !== '0' : req.headers['transfer-encoding'] !== undefined;
    if (declared !== undefined && Number(declared) > limit) {
      return oipError(res, 413, `request body of ${declared} bytes is over the limit of ${limit}`, { connection: 'close' });
    }

    // Least requests in flight among the ready instances.
    const ready = target.ready();
    let inst: Instance | undefined;
    for (const i of ready) if (!inst || i.inFlight < inst.inFlight) inst = i;
    const pool = inst?.pool;
    if (!inst || !pool) return oipError(res, 503, `model "${modelName}" has no ready instance`, { 'retry-after': '1' });

    const picked = inst;
    picked.inFlight++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        picked.inFlight--;
      }
    };
    res.once('close', release);

    const body = !hasBody ? null : declared !== undefined ? req : limitBody(req, limit);
    const ac = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) ac.abort();
    });
    pool
      .stream(
        { path: req.url ?? path, method: req.method as 'GET', headers: upstreamHeaders(req.headers), body, signal: ac.signal },
        ({ statusCode, headers }) => {
          res.writeHead(statusCode, downstreamHeaders(headers));
          return res;
        },
      )
      .catch((err: unknown) => {
        release();
        if (res.destroyed) return;
        if (err instanceof BodyTooLarge || (err as Error)?.cause instanceof BodyTooLarge) {
          return oipError(res, 413, (err as Error).message, { connection: 'close' });
        }
        this.d.log.warn({ model: `${target.namespace}/${target.name}`, version: target.version, err: (err as Error)?.message }, 'upstream request failed');
        oipError(res, 502, `model "${modelName}" instance failed to answer: ${(err as Error)?.message ?? err}`);
      });
  }
}
