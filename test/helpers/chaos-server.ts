import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

// A real HTTP server for download tests that misbehaves on request: it serves one generated
// body with ETag/Last-Modified and Range/If-Range support, and each request can be told to
// fail in a specific way. Requests take actions from a queue (then `fallback`), in order.

export type ChaosAction =
  | { kind: 'ok' }
  /** Send body bytes up to this absolute offset, then cut the TCP connection. */
  | { kind: 'drop'; atByte: number }
  /** Send body bytes up to this absolute offset, then nothing, keeping the connection open. */
  | { kind: 'stall'; atByte: number }
  /** Accept the request and never answer. */
  | { kind: 'noAnswer' }
  | { kind: 'status'; status: number; retryAfter?: string }
  /** Announce the full Content-Length but send `missing` bytes fewer, then close. */
  | { kind: 'short'; missing: number }
  /** Serve the body with the byte at this offset flipped. */
  | { kind: 'flip'; atByte: number }
  /** Answer 200 with the full body whatever the Range header says. */
  | { kind: 'ignoreRange' }
  /** The object changes identity (new ETag and Last-Modified, same bytes) before this answer. */
  | { kind: 'newEtag' }
  /** Honour Range but ignore If-Range, after changing the ETag: a 206 from a different object. */
  | { kind: 'newEtagIgnoreIfRange' }
  /** No Content-Length (chunked), full body. */
  | { kind: 'chunked' }
  | { kind: 'redirect'; location: string };

export interface ChaosRequest {
  path: string;
  range?: string;
  ifRange?: string;
  action: ChaosAction['kind'];
  status: number;
  bytesSent: number;
}

export interface ChaosServer {
  url: string;
  /** URL for another path on the same server (same body). */
  urlFor(path: string): string;
  body: Buffer;
  sha256: string;
  etag(): string;
  /** Queue actions for the next requests, in order. */
  script(...actions: ChaosAction[]): void;
  /** What a request gets when the queue is empty. */
  fallback: ChaosAction;
  requests: ChaosRequest[];
  /** Body bytes written to sockets, over all requests. */
  bytesSent(): number;
  stop(): Promise<void>;
}

const CHUNK = 64 * 1024;

export async function startChaosServer(
  opts: {
    size?: number;
    body?: Buffer;
    /** 'weak' sends W/"..." (unusable for If-Range, so clients fall back to Last-Modified). */
    etagStyle?: 'strong' | 'weak';
  } = {},
): Promise<ChaosServer> {
  const body = opts.body ?? randomBytes(opts.size ?? 4 * 1024 * 1024);
  const sha256 = createHash('sha256').update(body).digest('hex');
  let generation = 1;
  const etag = () => `${opts.etagStyle === 'weak' ? 'W/' : ''}"${sha256.slice(0, 16)}-${generation}"`;
  const lastModified = () => new Date(Date.UTC(2025, 0, 1) + generation * 1000).toUTCString();
  const queue: ChaosAction[] = [];
  const requests: ChaosRequest[] = [];
  const sockets = new Set<Socket>();

  const state = { fallback: { kind: 'ok' } as ChaosAction };

  const server: Server = createServer((req, res) => {
    const action = queue.shift() ?? state.fallback;
    const log: ChaosRequest = {
      path: req.url ?? '',
      range: req.headers.range,
      ifRange: req.headers['if-range'] as string | undefined,
      action: action.kind,
      status: 0,
      bytesSent: 0,
    };
    requests.push(log);
    handle(req, res, action, log).catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse, action: ChaosAction, log: ChaosRequest): Promise<void> {
    if (action.kind === 'noAnswer') return;
    if (action.kind === 'status') {
      log.status = action.status;
      res.writeHead(action.status, { 'content-type': 'text/plain', ...(action.retryAfter ? { 'retry-after': action.retryAfter } : {}) });
      res.end(`chaos: ${action.status}\n`);
      return;
    }
    if (action.kind === 'redirect') {
      log.status = 302;
      res.writeHead(302, { location: action.location });
      res.end();
      return;
    }
    if (action.kind === 'newEtag' || action.kind === 'newEtagIgnoreIfRange') generation++;

    let content = body;
    if (action.kind === 'flip') {
      content = Buffer.from(body);
      content[action.atByte] ^= 0xff;
    }
    const size = content.length;
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'] as string | undefined;
    const ifRangeOk = !ifRange || ifRange === etag() || ifRange === lastModified() || action.kind === 'newEtagIgnoreIfRange';
    const partial = !!range && ifRangeOk && action.kind !== 'ignoreRange';
    if (partial) start = Number(range![1]);
    if (partial && start >= size) {
      log.status = 416;
      res.writeHead(416, { 'content-range': `bytes */${size}` });
      res.end();
      return;
    }
    const headers: Record<string, string> = { etag: etag(), 'last-modified': lastModified(), 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (action.kind !== 'chunked') headers['content-length'] = String(size - start);
    if (partial) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
    log.status = partial ? 206 : 200;
    res.writeHead(log.status, headers);
    res.flushHeaders();
    if (req.method === 'HEAD') return void res.end();

    let end = size;
    if (action.kind === 'drop' || action.kind === 'stall') end = Math.max(start, Math.min(size, action.atByte));
    if (action.kind === 'short') end = Math.max(start, size - action.missing);
    const completed = await send(res, content, start, end, log);
    if (!completed) return;
    if (action.kind === 'stall') return; // keep the socket open, silent
    if (action.kind === 'drop' || action.kind === 'short') {
      res.socket?.destroySoon();
      return;
    }
    res.end();
  }

  /** Write [start, end) with backpressure; false when the client went away first. */
  async function send(res: ServerResponse, content: Buffer, start: number, end: number, log: ChaosRequest): Promise<boolean> {
    for (let pos = start; pos < end; pos += CHUNK) {
      if (res.destroyed) return false;
      const slice = content.subarray(pos, Math.min(end, pos + CHUNK));
      const ok = res.write(slice);
      log.bytesSent += slice.length;
      if (!ok) {
        const open = await new Promise<boolean>((resolve) => {
          const onDrain = () => { res.off('close', onClose); resolve(true); };
          const onClose = () => { res.off('drain', onDrain); resolve(false); };
          res.once('drain', onDrain);
          res.once('close', onClose);
        });
        if (!open) return false;
      }
    }
    return true;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const urlFor = (path: string) => `http://127.0.0.1:${port}${path.startsWith('/') ? path : `/${path}`}`;

  return {
    url: urlFor('/model.tar.gz'),
    urlFor,
    body,
    sha256,
    etag,
    script: (...actions) => void queue.push(...actions),
    get fallback() {
      return state.fallback;
    },
    set fallback(a: ChaosAction) {
      state.fallback = a;
    },
    requests,
    bytesSent: () => requests.reduce((n, r) => n + r.bytesSent, 0),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
