import { untilAborted } from '../until-aborted.js';
import { request, type Dispatcher } from 'undici';
import { ModeldError } from '../errors.js';
import { parseRetryAfter } from './backoff.js';
import type { PartialFile } from './partial-file.js';
import type { FetchPolicy } from './policy.js';
import type { Throttle } from './throttle.js';
import { authorizationFor } from './credentials.js';
import { checkUrl } from './url-policy.js';

// One HTTP request for a blob: resume from the partial file's length when it has bytes,
// validate what the server answers, stream the body into the file. Retrying is the caller's.

const MAX_REDIRECTS = 5;

/** What we know about the remote object from an earlier response (for Range + If-Range). */
export interface RemoteValidators {
  etag?: string;
  lastModified?: string;
  totalBytes?: number;
}

export interface ResponseMeta extends RemoteValidators {
  status: number;
  /** Where the bytes came from after redirects. */
  finalUrl: string;
}

/** The server's answer does not continue our partial bytes: empty the file and ask again without Range. */
export class RestartFromZero extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'RestartFromZero';
  }
}

export interface AttemptDeps {
  dispatcher: Dispatcher;
  policy: FetchPolicy;
  throttle?: Throttle;
  signal?: AbortSignal;
  /** Headers accepted, file already emptied if the server started over; nothing of the body written yet. */
  onStart(meta: ResponseMeta, startedOver: boolean): Promise<void>;
  /** After each chunk is written. */
  onChunk(bytes: number): Promise<void>;
}

const isStrongEtag = (etag?: string) => !!etag && !etag.startsWith('W/');

/** The If-Range value for a resume, or undefined when we have no usable validator. */
export function ifRangeValue(v: RemoteValidators): string | undefined {
  if (isStrongEtag(v.etag)) return v.etag;
  return v.lastModified;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function parseContentRange(v: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = v && /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

function parseLength(v: string | undefined): number | undefined {
  return v !== undefined && /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/**
 * undici only honours an abort once the request is on a connected socket; while it is still
 * connecting the signal is ignored until the connect timeout. Stop waiting at once instead,
 * and release a response that arrives after we gave up.
 */
function abortable(p: Promise<Dispatcher.ResponseData>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
  // Registered first, so it sees the abort that made untilAborted reject: nobody else will read that body.
  p.then((r) => signal.aborted && r.body.destroy(), () => {});
  return untilAborted(p, signal);
}

export async function runAttempt(startUrl: URL, file: PartialFile, known: RemoteValidators, deps: AttemptDeps): Promise<ResponseMeta> {
  const { policy } = deps;
  const ctl = new AbortController();
  const onOuterAbort = () => ctl.abort(deps.signal?.reason);
  deps.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (deps.signal?.aborted) ctl.abort(deps.signal.reason);

  // Watchdog: armed only while we wait on the server, so time spent throttling or writing never counts.
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      ctl.abort(new Error('stalled'));
    }, ms);
  };
  const disarm = () => clearTimeout(timer);

  let body: Dispatcher.ResponseData['body'] | undefined;
  let headersSeen = false;
  let meta: ResponseMeta | undefined;
  const offsetAtStart = file.size;
  let expectedEnd: number | undefined;
  try {
    let url = startUrl;
    let res: Dispatcher.ResponseData;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'modeld' };
      // Looked up for each hop: a redirect to another host carries that host's credentials, if
      // any, and never the first one's (a presigned URL must not get an Authorization header).
      const authorization = authorizationFor(url, policy.credentials);
      if (authorization) headers.authorization = authorization;
      if (file.size > 0) {
        headers.range = `bytes=${file.size}-`;
        const ifRange = ifRangeValue(known);
        if (ifRange) headers['if-range'] = ifRange;
      }
      arm(policy.connectTimeoutMs + policy.stallTimeoutMs);
      res = await abortable(request(url, { dispatcher: deps.dispatcher, method: 'GET', headers, signal: ctl.signal }), ctl.signal);
      disarm();
      body = res.body;
      const location = header(res.headers, 'location');
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304 && location) {
        await res.body.dump();
        if (hop >= MAX_REDIRECTS) throw new ModeldError('HTTPError', `more than ${MAX_REDIRECTS} redirects`, { details: { status: res.statusCode } });
        url = checkUrl(new URL(location, url).href, policy);
        continue;
      }
      break;
    }
    headersSeen = true;
    const status = res.statusCode;
    const h = res.headers;
    meta = {
      status,
      finalUrl: url.href,
      etag: header(h, 'etag'),
      lastModified: header(h, 'last-modified'),
    };
    const contentLength = parseLength(header(h, 'content-length'));
    let startedOver = false;

    if (status === 200) {
      // A full body: either we asked for it, or the server ignored Range / If-Range did not match.
      if (file.size > 0) {
        await file.reset();
        startedOver = true;
      }
      meta.totalBytes = contentLength;
      expectedEnd = contentLength;
    } else if (status === 206) {
      const cr = parseContentRange(header(h, 'content-range'));
      const why = !cr
        ? 'a 206 without a usable Content-Range'
        : cr.start !== file.size
          ? `a range starting at ${cr.start} instead of ${file.size}`
          : known.totalBytes !== undefined && cr.total !== undefined && cr.total !== known.totalBytes
            ? `a total size of ${cr.total} instead of ${known.totalBytes}`
            : known.etag && meta.etag && known.etag !== meta.etag
              ? `ETag ${meta.etag} instead of ${known.etag}`
              : undefined;
      if (why) {
        await res.body.dump().catch(() => {});
        throw new RestartFromZero(`server answered ${why}`);
      }
      meta.totalBytes = cr!.total ?? known.totalBytes;
      expectedEnd = meta.totalBytes ?? (contentLength !== undefined ? cr!.start + contentLength : undefined);
      if (contentLength !== undefined && expectedEnd !== undefined && cr!.start + contentLength !== expectedEnd) {
        await res.body.dump().catch(() => {});
        throw new RestartFromZero(`Content-Length ${contentLength} does not match Content-Range ${header(h, 'content-range')}`);
      }
    } else if (status === 416 && file.size > 0) {
      await res.body.dump().catch(() => {});
      throw new RestartFromZero('server refused the range (416)');
    } else {
      await res.body.dump().catch(() => {});
      const retryable = status === 408 || status === 429 || status >= 500;
      throw new ModeldError('HTTPError', `HTTP ${status} from ${url.host}`, {
        retryable,
        details: { status, retryAfterMs: retryable ? parseRetryAfter(header(h, 'retry-after')) : undefined },
      });
    }

    if (meta.totalBytes !== undefined && meta.totalBytes > policy.maxBytes) {
      throw new ModeldError('TooLarge', `archive is ${meta.totalBytes} bytes, over the limit of ${policy.maxBytes}`, {
        details: { totalBytes: meta.totalBytes, maxBytes: policy.maxBytes, status },
      });
    }
    await deps.onStart(meta, startedOver);

    const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const speed = lowSpeedCheck(policy);
    for (;;) {
      arm(policy.stallTimeoutMs);
      const next = await it.next();
      disarm();
      if (next.done) break;
      const chunk = next.value;
      const after = file.size + chunk.length;
      if (expectedEnd !== undefined && after > expectedEnd) {
        throw new ModeldError('TooLarge', `server sent more than the ${expectedEnd} bytes it announced`, { details: { status } });
      }
      if (after > policy.maxBytes) {
        throw new ModeldError('TooLarge', `archive exceeds the limit of ${policy.maxBytes} bytes`, { details: { maxBytes: policy.maxBytes, status } });
      }
      speed(chunk.length, file.size);
      if (deps.throttle) await deps.throttle.take(chunk.length, ctl.signal);
      await file.write(chunk);
      await deps.onChunk(chunk.length);
    }
    if (expectedEnd !== undefined && file.size < expectedEnd) {
      throw new ModeldError('SizeMismatch', `body ended after ${file.size} of ${expectedEnd} bytes`, {
        retryable: true,
        details: { status, bytes: file.size, totalBytes: expectedEnd },
      });
    }
    return meta;
  } catch (err) {
    if (deps.signal?.aborted) throw new ModeldError('Cancelled', 'download cancelled', { cause: err });
    if (stalled) {
      const where = headersSeen ? ` after ${file.size} bytes` : ' (no response)';
      throw new ModeldError('Stalled', `no data from the server for ${policy.stallTimeoutMs} ms${where}`, { retryable: true, cause: err });
    }
    if (err instanceof ModeldError || err instanceof RestartFromZero) throw err;
    // Every announced byte is on disk and the connection failed after them: undici reports a
    // keep-alive connection closed behind a body it had buffered but not yet parsed to its end
    // (tinyproxy closes after each response) as "other side closed". The digest decides.
    if (meta && expectedEnd !== undefined && file.size === expectedEnd) return meta;
    const code = (err as { code?: string }).code;
    if (code === 'UND_ERR_CONNECT_TIMEOUT') {
      throw new ModeldError('ConnectTimeout', `could not connect to ${startUrl.host} within ${policy.connectTimeoutMs} ms`, { retryable: true, cause: err });
    }
    if (headersSeen) {
      throw new ModeldError('SizeMismatch', `connection lost after ${file.size}${expectedEnd !== undefined ? ` of ${expectedEnd}` : ''} bytes (${(err as Error).message})`, {
        retryable: true,
        cause: err,
        details: { bytes: file.size, totalBytes: expectedEnd, receivedThisAttempt: file.size - offsetAtStart },
      });
    }
    throw new ModeldError('DownloadFailed', `request to ${startUrl.host} failed: ${code ?? (err as Error).message}`, { retryable: true, cause: err });
  } finally {
    disarm();
    deps.signal?.removeEventListener('abort', onOuterAbort);
    if (body && !body.destroyed) body.destroy();
  }
}

/**
 * curl's --speed-limit/--speed-time: a body that trickles (a slowloris server, a link that is
 * nearly dead) keeps the stall watchdog quiet forever; an average below the floor over a whole
 * window is Stalled too, and the attempt is cut and resumed like a stall.
 */
function lowSpeedCheck(policy: FetchPolicy): (bytes: number, done: number) => void {
  let since = performance.now();
  let bytes = 0;
  return (n, done) => {
    if (policy.lowSpeedBytesPerSec <= 0) return;
    bytes += n;
    const elapsed = performance.now() - since;
    if (elapsed < policy.lowSpeedWindowMs) return;
    const rate = (bytes * 1000) / elapsed;
    if (rate < policy.lowSpeedBytesPerSec) {
      throw new ModeldError('Stalled', `slower than ${policy.lowSpeedBytesPerSec} bytes/s for ${policy.lowSpeedWindowMs} ms (${Math.round(rate)} bytes/s) after ${done} bytes`, {
        retryable: true,
        details: { bytesPerSec: Math.round(rate), bytes: done },
      });
    }
    since = performance.now();
    bytes = 0;
  };
}
