import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { networkInterfaces } from 'node:os';
import { Transform, type Readable } from 'node:stream';
import type { Pool } from 'undici';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import { BearerToken, OPEN_PATHS, gatewayTls } from './gateway-auth.js';
import { isServerMetadataPath, serverMetadata } from './oip-model.js';
import { refuseBody } from './read-body.js';

// The node's one inference endpoint, owned by the runtime host (agent/host/): /v2/models/<name>/...
// is answered in this process for a model whose sessions the host holds (no second hop), or goes
// to that model's ready loopback instances (least requests in flight), bodies streamed both ways,
// for an external runtime or an `isolation: process` instance. The route table is swapped in one
// assignment, so a request is routed either to the old version or to the new one.

/** A loopback instance requests are proxied to. */
export interface Upstream {
  inFlight: number;
  pool: Pool | undefined;
}

interface RouteCommon {
  readonly namespace: string;
  readonly name: string;
  readonly modelName: string;
  readonly version: string;
  /** Instances or sessions that may take a request now. */
  readyCount(): number;
  /** Does this model count for /v2/health/ready (replicas > 0)? */
  shouldServe(): boolean;
}

/** A model version served by instances on loopback ports. */
export interface ProxyTarget extends RouteCommon {
  readonly kind: 'proxy';
  ready(): Upstream[];
}

/** A model version answered in this process (the host's sessions). */
export interface LocalTarget extends RouteCommon {
  readonly kind: 'local';
  /** Answers any request under /v2/models/<modelName>; `path` has no query. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): void;
}

export type RouteTarget = ProxyTarget | LocalTarget;

/** The labels of a request's metrics: the model resource and its served name. */
export interface RequestLabels {
  namespace: string;
  name: string;
  model: string;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'host']);

/** Request headers for the instance, from the raw [name, value, ...] list (cheaper than req.headers). */
function upstreamHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
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

/** 413 while the client may still be sending: the answer is not lost to a reset (read-body.ts). */
function tooLarge(req: IncomingMessage, res: ServerResponse, message: string) {
  refuseBody(req, res, 413, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ error: message })));
}

class BodyTooLarge extends Error {}

/** Bodies up to this size are read whole before forwarding (one write upstream). */
const SMALL_BODY = 64 * 1024;

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

/** The node endpoint's base URL as other hosts reach it: node.address, else the bind address, else a detected one. */
export function endpointUrl(config: Pick<Config, 'node' | 'gateway'>, port: number): string {
  const { address } = config.node;
  const bind = config.gateway.bind;
  const host = address || (bind && bind !== '0.0.0.0' && bind !== '::' ? bind : detectAddress());
  const scheme = config.gateway.tls?.cert ? 'https' : 'http';
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** status.url for a model: its OIP endpoint. */
export const modelUrl = (base: string, modelName: string) => `${base}/v2/models/${encodeURIComponent(modelName)}`;

export class Gateway {
  private readonly routes = new Map<string, RouteTarget>();
  private server: Server | undefined;
  private boundPort = 0;
  private token: BearerToken | undefined;

  /** `onRequest`: after each request routed to a model (its route object, HTTP status or 499, seconds). */
  constructor(private readonly d: { config: Config; log: Logger; onRequest?: (target: RouteTarget, status: number, seconds: number) => void }) {}

  async listen(): Promise<void> {
    const { bind, port, tokenFile } = this.d.config.gateway;
    // Both read before the port opens: an unreadable file stops the start (ConfigInvalid).
    const tls = gatewayTls(this.d.config);
    this.token = tokenFile ? new BearerToken(tokenFile, (message) => this.d.log.error({ reason: message }, 'gateway.tokenFile cannot be read again: every request is refused until it is fixed')) : undefined;
    const handler = (req: IncomingMessage, res: ServerResponse) => this.handle(req, res);
    // With TLS, a plain-HTTP client fails the handshake and is dropped: nothing is served in clear.
    const server: Server = tls ? createHttpsServer({ ...tls, keepAliveTimeout: 65_000 }, handler) : createServer({ keepAliveTimeout: 65_000 }, handler);
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
    this.d.log.info({ bind, port: this.boundPort, tls: !!tls, token: !!this.token }, 'gateway listening');
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
    return endpointUrl(this.d.config, this.boundPort);
  }

  /** status.url for a model: its OIP endpoint through this gateway. */
  urlFor(modelName: string): string {
    return modelUrl(this.baseUrl(), modelName);
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
      if (this.token && !OPEN_PATHS.has(path)) {
        const auth = this.token.check(req);
        if (!auth.ok) return refuseBody(req, res, auth.status, { 'content-type': 'application/json', 'www-authenticate': auth.wwwAuthenticate }, Buffer.from(JSON.stringify({ error: auth.message })));
      }
      if (path.startsWith('/v2/models/')) return this.proxy(req, res, path, 11);
      // TF Serving's REST API (/v1/models/<name>[/versions/<v>][:predict]) for runtimes that speak it.
      if (path.startsWith('/v1/models/')) return this.proxy(req, res, path, 11);
      if (path === '/v2/health/live') return sendJson(res, 200, { live: true });
      if (path === '/v2/health/ready') {
        // Ready only when every model that should serve can take a request.
        const missing = [...this.routes.entries()].filter(([, t]) => t.shouldServe() && t.readyCount() === 0).map(([n]) => n);
        return missing.length === 0 ? sendJson(res, 200, { ready: true }) : sendJson(res, 503, { ready: false, notReady: missing.slice(0, 100) });
      }
      if (path === '/v2/models') {
        return sendJson(res, 200, {
          models: [...this.routes.entries()].map(([name, t]) => ({
            name,
            version: t.version,
            namespace: t.namespace,
            resource: t.name,
            state: t.readyCount() > 0 ? 'READY' : 'UNAVAILABLE',
          })),
        });
      }
      if (isServerMetadataPath(path)) return sendJson(res, 200, serverMetadata());
      oipError(res, 404, `no route for ${req.method} ${path}`);
    } catch (err) {
      this.d.log.error({ err: (err as Error).message }, 'gateway request failed');
      oipError(res, 500, 'internal gateway error');
    }
  }

  private proxy(req: IncomingMessage, res: ServerResponse, path: string, from: number): void {
    const m = /^[^/:]*/.exec(path.slice(from))!;
    let modelName: string;
    try {
      modelName = decodeURIComponent(m[0]);
    } catch {
      return oipError(res, 400, 'bad model name in path');
    }
    const target = this.routes.get(modelName);
    if (!target) return oipError(res, 404, `unknown model "${modelName.slice(0, 128)}"`);
    const onRequest = this.d.onRequest;
    if (onRequest) {
      // Routed models only (a label per unknown name would let clients grow the series without bound).
      const t0 = performance.now();
      res.once('close', () => onRequest(target, res.writableFinished ? res.statusCode : 499, (performance.now() - t0) / 1000));
    }
    if (target.kind === 'local') return target.handle(req, res, path);

    const limit = this.d.config.gateway.maxBodyBytes;
    const declared = req.headers['content-length'];
    const hasBody = declared !== undefined ? declared !== '0' : req.headers['transfer-encoding'] !== undefined;
    if (declared !== undefined && Number(declared) > limit) return tooLarge(req, res, `request body of ${declared} bytes is over the limit of ${limit}`);

    // Least requests in flight among the ready instances.
    const ready = target.ready();
    let inst: Upstream | undefined;
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

    const fail = (err: Error) => {
      release();
      if (res.destroyed) return;
      if (err instanceof BodyTooLarge || err?.cause instanceof BodyTooLarge) return tooLarge(req, res, err.message);
      if (res.headersSent) return void res.destroy(err);
      this.d.log.warn({ model: `${target.namespace}/${target.name}`, version: target.version, err: err?.message }, 'upstream request failed');
      oipError(res, 502, `model "${modelName}" instance failed to answer: ${err?.message ?? err}`);
    };
    const headers = upstreamHeaders(req.rawHeaders);
    const len = declared === undefined ? -1 : Number(declared);
    if (len > 0 && len <= SMALL_BODY) {
      // Small body of known size: read it whole, so headers and body go upstream in one write.
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.once('end', () => this.forward(req, res, pool, headers, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), fail));
      req.once('error', (err) => fail(err));
      return;
    }
    this.forward(req, res, pool, headers, !hasBody ? null : declared !== undefined ? req : limitBody(req, limit), fail);
  }

  private forward(req: IncomingMessage, res: ServerResponse, pool: Pool, headers: string[], body: Buffer | Readable | null, fail: (err: Error) => void): void {
    // undici's lowest-level API: response bytes go straight to `res`, with back-pressure.
    let ctl: { abort(reason: Error): void; pause(): void; resume(): void } | undefined;
    let held: Buffer | undefined;
    res.once('close', () => {
      if (!res.writableFinished) ctl?.abort(new Error('client went away'));
    });
    res.on('drain', () => ctl?.resume());
    try {
      pool.dispatch(
        { path: req.url ?? '/', method: req.method as 'GET', headers, body },
        {
          onRequestStart(controller) {
            ctl = controller;
          },
          onResponseStart(_c, statusCode, headers) {
            res.writeHead(statusCode, downstreamHeaders(headers as Record<string, string | string[] | undefined>));
          },
          // One chunk is held back, so a one-chunk answer leaves in one write with its headers.
          onResponseData(controller, chunk) {
            const prev = held;
            held = chunk;
            if (prev && !res.write(prev)) controller.pause();
          },
          onResponseEnd() {
            if (held) res.end(held);
            else res.end();
          },
          onResponseError(_c, err) {
            fail(err);
          },
        },
      );
    } catch (err) {
      fail(err as Error);
    }
  }
}
