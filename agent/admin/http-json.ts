import type { IncomingMessage, ServerResponse } from 'node:http';
import { ModeldError, toModeldError, type ErrorCode } from '../errors.js';

// JSON in and out for the admin API. Errors are {error, reason}: reason is the ModeldError code
// the CLI turns back into an error and an exit code.

const STATUS: Partial<Record<ErrorCode, number>> = {
  BadRequest: 400,
  InvalidSpec: 400,
  NotFound: 404,
  ManagedByCloud: 409,
  LocalApplyNotAllowed: 403,
  NoRollbackVersion: 409,
  NotHeld: 409,
  DeferralTooLong: 400,
  StateLocked: 409,
  DigestMismatch: 422,
  NoSpace: 507,
};

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  const e = toModeldError(err);
  const body = { error: e.message, reason: e.code };
  if (res.headersSent) {
    res.end(JSON.stringify(body) + '\n'); // a streamed answer: the error is its last line
    return;
  }
  sendJson(res, STATUS[e.code] ?? 500, body);
}

/** The request body as text; BadRequest when larger than maxBytes. */
export async function readText(req: IncomingMessage, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new ModeldError('BadRequest', `request body larger than ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The request body as parsed JSON (an empty body is `{}`); BadRequest when too large or not JSON. */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const text = await readText(req, maxBytes);
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModeldError('BadRequest', `request body is not JSON: ${(err as Error).message}`);
  }
}

/** An object body or BadRequest. */
export function asObject(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ModeldError('BadRequest', 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

export function optString(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ModeldError('BadRequest', `${key} must be a string`);
  return v;
}

export function optBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ModeldError('BadRequest', `${key} must be true or false`);
  return v;
}
