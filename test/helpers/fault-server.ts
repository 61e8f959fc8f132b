import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

// A fault-injecting HTTP server on raw `net`, for the faults node:http will not produce exactly:
// an HTTP/1.0 close-delimited body, a FIN queued right behind a whole body the client has not
// read, a Range answered 200 with other bytes, an object that changes between attempts, a
// trickle (slowloris), a TCP reset at a given or seeded offset. One server; each request takes
// the next fault from a queue (then `fallback`). Offsets left open are drawn from a PRNG seeded
// with `seed`, so a run is reproduced by its seed (tests print it).

/** One version of the object at the URL. Objects with the same ETag pose as one (a lying server). */
export interface FaultObject {
  body: Buffer;
  etag: string;
  lastModified: string;
  sha256: string;
}

export type Fault = { object?: number } & (
  /** HTTP/1.1, keep-alive, Content-Length, Range and If-Range honoured, written under backpressure. */
  | { kind: 'ok'; ignoreIfRange?: boolean }
  /**
   * `HTTP/1.0 200`, no Content-Length, no ETag, Range ignored: the body ends with the
   * connection (FIN). `endAt` ends it cleanly there instead, a truncation nobody can tell.
   */
  | { kind: 'http10'; endAt?: number }
  /**
   * HTTP/1.1 with Content-Length and `Connection: close`: the head and the whole body are handed
   * to the socket in one write followed at once by the FIN, not waiting for the client to read
   * any of it, so the FIN arrives right behind the last byte while the client is still behind.
   * `keepAlive` says `Connection: keep-alive` and closes all the same, as tinyproxy does (it
   * drops the origin's Connection header and closes after each response).
   */
  | { kind: 'closeBehindBody'; keepAlive?: boolean }
  /** Whatever Range and If-Range say, `200` with the whole object (possibly other bytes than before). */
  | { kind: 'rangeAs200' }
  /**
   * `bytes` every `everyMs` ms: in the head (it never ends: a long header keeps growing) or in
   * the body (Content-Length announced; a slow but live transfer).
   */
  | { kind: 'trickle'; in: 'headers' | 'body'; bytes: number; everyMs: number }
  /**
   * Honours Range like `ok`, sends up to `atByte` (absolute; default drawn from the PRNG), then
   * RST. With `hold`, the RST waits for it (e.g. until the client has written those bytes: a
   * reset loses whatever the client had received but not yet consumed).
   */
  | { kind: 'reset'; atByte?: number; ignoreIfRange?: boolean; hold?: () => Promise<unknown> }
);

export interface FaultRequest {
  index: number;
  range?: string;
  ifRange?: string;
  fault: Fault['kind'];
  object: number;
  status: number;
  /** First body byte sent (absolute offset in the object). */
  start: number;
  /** Body bytes handed to the socket. */
  bytesSent: number;
  resetAt?: number;
  /** The client went away before the answer was complete. */
  clientGone?: boolean;
}

export interface FaultServer {
  url: string;
  urlFor(path: string): string;
  seed: number;
  /** The PRNG the server draws open offsets from (tests may draw theirs from it too). */
  random(): number;
  objects: FaultObject[];
  script(...faults: Fault[]): void;
  fallback: Fault;
  requests: FaultRequest[];
  bytesSent(): number;
  stop(): Promise<void>;
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for a test file: FAULT_SEED when set (to replay a failure), else a fresh one. */
export function faultSeed(): number {
  const env = process.env.FAULT_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : Math.floor(Math.random() * 2 ** 32);
}

export function faultObject(body: Buffer, etag: string, generation = 1): FaultObject {
  return {
    body,
    etag,
    lastModified: new Date(Date.UTC(2025, 0, 1) + generation * 1000).toUTCString(),
    sha256: createHash('sha256').update(body).digest('hex'),
  };
}

const CHUNK = 64 * 1024;

interface Head {
  method: string;
  path: string;
  version: string;
  headers: Record<string, string>;
}

function parseHead(text: string): Head {
  const [line, ...rest] = text.split('\r\n');
  const [method, path, version] = line.split(' ');
  const headers: Record<string, string> = {};
  for (const h of rest) {
    const i = h.indexOf(':');
    if (i > 0) headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return { method, path, version, headers };
}

function headBytes(statusLine: string, headers: Record<string, string | number>): Buffer {
  return Buffer.from(`${statusLine}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`, 'latin1');
}

/** Writes under backpressure; false when the socket went away first. */
function write(socket: Socket, data: Buffer): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(false);
  if (socket.write(data)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}

function wait(ms: number, socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => (socket.off('close', onClose), resolve(!socket.destroyed)), ms);
    const onClose = () => (clearTimeout(t), resolve(false));
    socket.once('close', onClose);
  });
}

export async function startFaultServer(opts: { objects: FaultObject[]; seed: number }): Promise<FaultServer> {
  const { objects } = opts;
  const random = seededRandom(opts.seed);
  const queue: Fault[] = [];
  const requests: FaultRequest[] = [];
  const sockets = new Set<Socket>();
  const state = { fallback: { kind: 'ok' } as Fault };

  /** Answers one request; true when the connection stays open for another. */
  async function answer(socket: Socket, head: Head): Promise<boolean> {
    const fault = queue.shift() ?? state.fallback;
    const objectIndex = fault.object ?? 0;
    const obj = objects[objectIndex];
    const size = obj.body.length;
    const log: FaultRequest = {
      index: requests.length,
      range: head.headers.range,
      ifRange: head.headers['if-range'],
      fault: fault.kind,
      object: objectIndex,
      status: 0,
      start: 0,
      bytesSent: 0,
    };
    requests.push(log);
    const send = async (from: number, to: number, pace?: { bytes: number; everyMs: number }) => {
      for (let pos = from; pos < to; ) {
        const n = Math.min(pace?.bytes ?? CHUNK, to - pos);
        if (!(await write(socket, obj.body.subarray(pos, pos + n)))) return false;
        log.bytesSent += n;
        pos += n;
        if (pace && pos < to && !(await wait(pace.everyMs, socket))) return false;
      }
      return true;
    };

    if (fault.kind === 'http10') {
      log.status = 200;
      socket.write(headBytes('HTTP/1.0 200 OK', { server: 'fault-server', 'content-type': 'application/octet-stream', 'last-modified': obj.lastModified }));
      const end = fault.endAt !== undefined ? Math.min(size, fault.endAt) : size;
      if (!(await send(0, end))) log.clientGone = true;
      socket.end();
      return false;
    }

    if (fault.kind === 'trickle' && fault.in === 'headers') {
      // A head that never ends: a header value growing by `bytes` every `everyMs`.
      socket.write(Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nx-trickle: ', 'latin1'));
      while (await wait(fault.everyMs, socket)) {
        if (!(await write(socket, Buffer.alloc(fault.bytes, 'a')))) break;
      }
      log.clientGone = true;
      return false;
    }

    // Range handling as a real HTTP/1.1 server does, unless the fault says otherwise.
    const m = /^bytes=(\d+)-$/.exec(head.headers.range ?? '');
    const ifRange = head.headers['if-range'];
    const ifRangeOk = !ifRange || ifRange === obj.etag || ifRange === obj.lastModified || ('ignoreIfRange' in fault && !!fault.ignoreIfRange);
    const partial = !!m && ifRangeOk && fault.kind !== 'rangeAs200';
    const start = partial ? Number(m![1]) : 0;
    log.start = start;
    const close = fault.kind !== 'ok' || head.version !== 'HTTP/1.1' || /close/i.test(head.headers.connection ?? '');
    if (partial && start >= size) {
      log.status = 416;
      socket.write(headBytes('HTTP/1.1 416 Range Not Satisfiable', { 'content-range': `bytes */${size}`, 'content-length': 0, connection: close ? 'close' : 'keep-alive' }));
      if (close) socket.end();
      return !close;
    }
    log.status = partial ? 206 : 200;
    const headers: Record<string, string | number> = {
      server: 'fault-server',
      'content-type': 'application/octet-stream',
      'content-length': size - start,
      etag: obj.etag,
      'last-modified': obj.lastModified,
      'accept-ranges': 'bytes',
      connection: close ? 'close' : 'keep-alive',
    };
    if (partial) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
    const statusLine = partial ? 'HTTP/1.1 206 Partial Content' : 'HTTP/1.1 200 OK';
    if (head.method === 'HEAD') {
      socket.write(headBytes(statusLine, headers));
      if (close) socket.end();
      return !close;
    }

    switch (fault.kind) {
      case 'closeBehindBody': {
        // One write of everything, then the FIN: nothing waits for the client.
        if (fault.keepAlive) headers.connection = 'keep-alive';
        const all = Buffer.concat([headBytes(statusLine, headers), obj.body.subarray(start)]);
        log.bytesSent = size - start;
        socket.end(all);
        return false;
      }
      case 'reset': {
        const at = fault.atByte ?? start + Math.floor(random() * (size - start));
        log.resetAt = Math.max(start, Math.min(size, at));
        socket.write(headBytes(statusLine, headers));
        if (!(await send(start, log.resetAt))) log.clientGone = true;
        else if (fault.hold) await fault.hold().catch(() => {});
        if (!socket.destroyed) socket.resetAndDestroy();
        return false;
      }
      case 'trickle': {
        socket.write(headBytes(statusLine, headers));
        if (!(await send(start, size, { bytes: fault.bytes, everyMs: fault.everyMs }))) log.clientGone = true;
        socket.end();
        return false;
      }
      case 'rangeAs200':
      case 'ok': {
        socket.write(headBytes(statusLine, headers));
        if (!(await send(start, size))) {
          log.clientGone = true;
          return false;
        }
        if (close) socket.end();
        return !close;
      }
    }
  }

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let busy = false;
    const next = () => {
      if (busy || socket.destroyed) return;
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = parseHead(buffered.subarray(0, end).toString('latin1'));
      buffered = buffered.subarray(end + 4);
      busy = true;
      answer(socket, head).then(
        (keepAlive) => {
          busy = false;
          if (keepAlive) next();
        },
        () => socket.destroy(),
      );
    };
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      next();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const urlFor = (path: string) => `http://127.0.0.1:${port}${path.startsWith('/') ? path : `/${path}`}`;
  return {
    url: urlFor('/model.tar.gz'),
    urlFor,
    seed: opts.seed,
    random,
    objects,
    script: (...faults) => void queue.push(...faults),
    get fallback() {
      return state.fallback;
    },
    set fallback(f: Fault) {
      state.fallback = f;
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
