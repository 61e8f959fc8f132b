import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';

// What the node endpoint demands of a client, from files on the node (never from the cloud):
// TLS (gateway.tls.cert + key) and a bearer token (gateway.tokenFile). The token is compared in
// constant time and never logged. Health probes stay open (Kubernetes-style liveness and
// readiness checks carry no token): /v2/health/live and /v2/health/ready.

export const OPEN_PATHS = new Set(['/v2/health/live', '/v2/health/ready']);

function readKeyFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ModeldError('ConfigInvalid', `${key}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** The endpoint's certificate and key, or undefined for plain HTTP. A file that cannot be read is a config error. */
export function gatewayTls(config: Pick<Config, 'gateway'>): { cert: Buffer; key: Buffer } | undefined {
  const t = config.gateway.tls;
  if (!t.cert || !t.key) return undefined;
  return { cert: readKeyFile('gateway.tls.cert', t.cert), key: readKeyFile('gateway.tls.key', t.key) };
}

const digest = (s: string | Buffer) => createHash('sha256').update(s).digest();

function tokenDigest(file: string): Buffer {
  // One trailing newline (echo > file) is not part of the token.
  const token = readKeyFile('gateway.tokenFile', file).toString('utf8').replace(/\r?\n$/, '');
  if (!token) throw new ModeldError('ConfigInvalid', `gateway.tokenFile: ${file} is empty`);
  return digest(token);
}

export type AuthResult = { ok: true } | { ok: false; status: 401; wwwAuthenticate: string; message: string };

/**
 * The bearer token of gateway.tokenFile. Read at start (an unreadable or empty file stops the
 * start), and again when the file changes (looked at no more than once a second), so a rotated
 * token takes effect without a restart. A file that goes bad later refuses every request
 * (fail closed) until it is fixed.
 */
export class BearerToken {
  private expected: Buffer | undefined;
  private stamp: string;
  private checkedAt = 0;

  constructor(
    private readonly file: string,
    private readonly onReloadError: (message: string) => void = () => {},
  ) {
    this.expected = tokenDigest(file);
    this.stamp = this.fileStamp();
  }

  private fileStamp(): string {
    try {
      const s = statSync(this.file);
      return `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      return 'gone';
    }
  }

  private refresh(now: number): void {
    if (now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    const stamp = this.fileStamp();
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.expected = tokenDigest(this.file);
    } catch (err) {
      this.expected = undefined;
      this.onReloadError((err as Error).message);
    }
  }

  check(req: IncomingMessage, now = Date.now()): AuthResult {
    this.refresh(now);
    const header = req.headers.authorization;
    const m = header ? /^Bearer +(\S+) *$/i.exec(header) : null;
    // Digests of equal length: the comparison takes the same time whatever was sent.
    if (m && this.expected && timingSafeEqual(digest(m[1]), this.expected)) return { ok: true };
    if (!header) return { ok: false, status: 401, wwwAuthenticate: 'Bearer realm="modeld"', message: 'this endpoint needs a bearer token (Authorization: Bearer <token>)' };
    return { ok: false, status: 401, wwwAuthenticate: 'Bearer realm="modeld", error="invalid_token"', message: 'the bearer token is not valid' };
  }
}
