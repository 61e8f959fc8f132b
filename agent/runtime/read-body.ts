import type { IncomingMessage, ServerResponse } from 'node:http';
import { OipError } from './oip-tensors.js';

/** Reads a request body up to `limit` bytes; rejects with OipError 413 past it. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new OipError(`request body of ${declared} bytes is over the limit of ${limit}`, 413));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new OipError(`request body is over the limit of ${limit} bytes`, 413));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** How long, and how many bytes, the rest of a refused body is read and thrown away before closing. */
export const LINGER_MS = 30_000;
export const LINGER_BYTES = 64 * 1024 * 1024;

/**
 * Answers a request whose body is refused while the client may still be sending it (413), and
 * closes the connection without losing the answer. A socket closed with bytes unread is reset
 * by the kernel, and the client then sees EPIPE or ECONNRESET instead of the answer (Apache and
 * nginx call the cure "lingering close"). So the answer goes out at once, the rest of the body
 * is read and dropped until it ends (at most LINGER_BYTES, LINGER_MS), and only then does the
 * response end, which closes the connection (`connection: close`).
 */
export function refuseBody(req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { ...headers, 'content-length': String(body.length), connection: 'close' });
  res.write(body);
  let left = LINGER_BYTES;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    req.off('data', count);
    if (req.complete) res.end();
    else {
      res.end();
      res.destroy(); // past the bounds: this client is not going to stop
    }
  };
  const count = (c: Buffer) => {
    left -= c.length;
    if (left < 0) end();
  };
  const timer = setTimeout(end, LINGER_MS);
  timer.unref();
  if (req.complete) return end();
  req.removeAllListeners('data');
  req.on('data', count);
  req.once('end', end);
  req.once('error', end);
  res.once('close', end);
  req.resume();
}
