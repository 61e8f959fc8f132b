import { statSync } from 'node:fs';
import { request } from 'node:http';
import { dirname } from 'node:path';
import { groupName, userName } from '../accounts.js';
import { ModeldError, type ErrorCode } from '../errors.js';

// The CLI's side of the admin API: JSON requests over the daemon's unix socket. An error answer
// ({error, reason}) comes back as a ModeldError with the daemon's reason code.

export interface Health {
  ok: boolean;
  pid: number;
  version: string;
  node: string;
  stateDir: string;
}

interface RawResponse {
  status: number;
  contentType: string;
  body: NodeJS.ReadableStream;
}

/**
 * Whose permission is missing: the socket's owner, group and mode (or those of the first
 * directory on its way this user may not pass), and how to get in.
 */
export function socketPermissionDenied(socketPath: string, group: string | undefined): ModeldError {
  let at = socketPath;
  let facts = '';
  for (let p = socketPath; ; p = dirname(p)) {
    try {
      const st = statSync(p);
      facts = `${userName(st.uid)}:${groupName(st.gid)} 0${(st.mode & 0o777).toString(8)}`;
      at = p;
      break;
    } catch {
      if (dirname(p) === p) break;
    }
  }
  const where = at === socketPath ? facts : `${at} ${facts}`;
  const who = `uid ${process.getuid?.()}`;
  return new ModeldError(
    'PermissionDenied',
    `permission denied on ${socketPath} (${where}) for ${who}: run as a member of group ${group || 'modeld'}, or with sudo`,
  );
}

export class AdminClient {
  /** `group`: the group whose members may use the socket (config admin.socketGroup), for the permission error. */
  constructor(
    readonly socketPath: string,
    readonly group?: string,
  ) {}

  /**
   * The daemon's health, or undefined when nothing listens on the socket (no file, or a stale one).
   * A socket we may not open means a daemon runs as another user: PermissionDenied, saying whose.
   */
  async health(): Promise<Health | undefined> {
    try {
      return await this.call<Health>('GET', '/v1/health', undefined, 5000);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') return undefined;
      if (code === 'EACCES' || code === 'EPERM') {
        throw socketPermissionDenied(this.socketPath, this.group);
      }
      if (code === 'ETIMEDOUT' || code === 'ECONNRESET') {
        throw new ModeldError('DaemonNotRunning', `the daemon accepts connections on ${this.socketPath} but does not answer`);
      }
      throw err;
    }
  }

  /** One request; resolves with the parsed JSON answer or throws the daemon's error. */
  async call<T>(method: string, path: string, body?: unknown, timeoutMs = 0): Promise<T> {
    const res = await this.send(method, path, body, { timeoutMs });
    const text = await readAll(res.body);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ModeldError('Internal', `the daemon answered ${res.status} with something that is not JSON`);
    }
    if (res.status >= 400) throw fromAnswer(parsed, res.status);
    return parsed as T;
  }

  /** A request answered with NDJSON lines: `onLine` gets each; the last line's `result` is returned. */
  async stream<T>(method: string, path: string, body: unknown, onLine: (line: Record<string, unknown>) => void, signal?: AbortSignal): Promise<T> {
    const res = await this.send(method, path, body, { accept: 'application/x-ndjson', signal });
    if (res.status >= 400 || !res.contentType.includes('ndjson')) {
      const parsed = JSON.parse(await readAll(res.body)) as unknown;
      if (res.status >= 400) throw fromAnswer(parsed, res.status);
      return parsed as T;
    }
    let buffered = '';
    let last: Record<string, unknown> | undefined;
    for await (const chunk of res.body) {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) {
        if (!l.trim()) continue;
        last = JSON.parse(l) as Record<string, unknown>;
        onLine(last);
      }
    }
    if (buffered.trim()) last = JSON.parse(buffered) as Record<string, unknown>;
    if (!last) throw new ModeldError('Internal', 'the daemon closed the answer without a result');
    if ('error' in last) throw fromAnswer(last, 500);
    if (!('result' in last)) throw new ModeldError('Internal', 'the daemon closed the answer before the result');
    return last.result as T;
  }

  private send(method: string, path: string, body: unknown, opts: { timeoutMs?: number; accept?: string; signal?: AbortSignal }): Promise<RawResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          path,
          method,
          signal: opts.signal,
          headers: {
            accept: opts.accept ?? 'application/json',
            ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          },
        },
        (res) => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: res }),
      );
      req.on('error', reject);
      if (opts.timeoutMs) {
        req.setTimeout(opts.timeoutMs, () => req.destroy(Object.assign(new Error(`no answer on ${this.socketPath} within ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      }
      req.end(payload);
    });
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

function fromAnswer(parsed: unknown, status: number): ModeldError {
  const o = (parsed ?? {}) as { error?: unknown; reason?: unknown };
  const reason = typeof o.reason === 'string' ? o.reason : 'Internal';
  const message = typeof o.error === 'string' ? o.error : `the daemon answered ${status}`;
  return new ModeldError(reason as ErrorCode, message);
}
