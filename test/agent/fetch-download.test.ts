import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { makeTempRoot, openAgent, rejection, testPolicy, type Agentish } from './fetch-fixture.js';

const SIZE = 4 * 1024 * 1024;

let server: ChaosServer;
let agent: Agentish;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  server = await startChaosServer({ size: SIZE });
  const t = await makeTempRoot();
  cleanup = t.cleanup;
  agent = openAgent(t.root, testPolicy());
});

afterEach(async () => {
  agent.close();
  await server.stop();
  await cleanup();
});

const partials = () => (existsSync(agent.paths.partialDir) ? readdirSync(agent.paths.partialDir) : []);

describe('fetchBlob over HTTP', () => {
  it('downloads, verifies and stores the blob at blobs/sha256/<ab>/<rest>', async () => {
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    const expectedPath = `${agent.root}/blobs/sha256/${server.sha256.slice(0, 2)}/${server.sha256.slice(2)}`;
    expect(r).toMatchObject({ sha256: server.sha256, size: SIZE, path: expectedPath, fetchedBytes: SIZE, resumedFrom: 0, fromStore: false });
    expect(readFileSync(expectedPath).equals(server.body)).toBe(true);
    expect(statSync(expectedPath).mode & 0o222).toBe(0); // read-only
    expect(agent.blobStore.has(server.sha256)).toBe(true);
    expect(agent.store.downloads.list()).toEqual([]);
    expect(partials()).toEqual([]);
  });

  it('accepts the digest in upper case', async () => {
    const r = await agent.fetch({ url: server.url, sha256: server.sha256.toUpperCase() });
    expect(r.sha256).toBe(server.sha256);
  });

  it('never requests a blob that is already in the store', async () => {
    await agent.fetch({ url: server.url, sha256: server.sha256 });
    const before = server.requests.length;
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r).toMatchObject({ fromStore: true, fetchedBytes: 0, size: SIZE });
    expect(server.requests.length).toBe(before);
  });

  it('records a verified blob file found without a database record instead of downloading it', async () => {
    await agent.fetch({ url: server.url, sha256: server.sha256 });
    agent.store.blobs.delete(server.sha256); // as if the process died between rename and record
    const before = server.requests.length;
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.fromStore).toBe(true);
    expect(server.requests.length).toBe(before);
    expect(agent.blobStore.has(server.sha256)).toBe(true);
  });

  it('replaces an unrecorded file at the blob path that does not match its name', async () => {
    const path = agent.blobStore.pathOf(server.sha256);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, 'not the archive');
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.fromStore).toBe(false);
    expect(readFileSync(path).equals(server.body)).toBe(true);
  });

  it('resumes after drops at 30% and 70% without fetching the body again', async () => {
    server.script({ kind: 'drop', atByte: Math.floor(SIZE * 0.3) }, { kind: 'drop', atByte: Math.floor(SIZE * 0.7) });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([200, 206, 206]);
    expect(server.requests[1].range).toMatch(/^bytes=\d+-$/);
    expect(server.requests[1].ifRange).toBe(server.etag());
    expect(server.bytesSent()).toBeLessThan(SIZE * 1.05);
    expect(r.fetchedBytes).toBe(SIZE);
  });

  // Stall timeouts of 2 s, not a few hundred ms: on a loaded machine a healthy local transfer
  // can pause that long, and a false stall is an extra request the tests would count.
  it('retries a stalled transfer and completes from where it stalled', async () => {
    agent.policy = testPolicy({ stallTimeoutMs: 2000 });
    server.script({ kind: 'stall', atByte: SIZE / 2 });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.length).toBe(2);
    expect(server.requests[1].status).toBe(206);
    expect(server.bytesSent()).toBeLessThan(SIZE * 1.05);
  });

  it('retries a server that accepts the request and never answers', async () => {
    agent.policy = testPolicy({ stallTimeoutMs: 2000, connectTimeoutMs: 2000 });
    server.script({ kind: 'noAnswer' });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.length).toBe(2);
  });

  it('ends in Stalled after the attempts are used up', async () => {
    agent.policy = testPolicy({ stallTimeoutMs: 2000, attempts: 2 });
    server.fallback = { kind: 'stall', atByte: SIZE / 4 };
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'Stalled', details: { url: server.url, attempts: 2 } });
    expect(server.requests.length).toBe(2);
  });

  it('ends a body that trickles under the low-speed floor in Stalled (a slowloris server never trips the stall timeout)', async () => {
    // 16 bytes every 20 ms: 800 bytes/s, never quiet for the 20 s stall timeout, never done.
    const trickle = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(SIZE) });
      const t = setInterval(() => res.write(Buffer.alloc(16)), 20);
      res.on('close', () => clearInterval(t));
    });
    await new Promise<void>((r) => trickle.listen(0, '127.0.0.1', () => r()));
    try {
      agent.policy = testPolicy({ attempts: 2, lowSpeedBytesPerSec: 4096, lowSpeedWindowMs: 500 });
      const url = `http://127.0.0.1:${(trickle.address() as AddressInfo).port}/m.tgz`;
      const err = await rejection(agent.fetch({ url, sha256: server.sha256 }));
      expect(err).toMatchObject({ code: 'Stalled', details: { attempts: 2 } });
      expect(err.message).toMatch(/slower than 4096 bytes\/s for 500 ms/);
    } finally {
      trickle.closeAllConnections();
      await new Promise((r) => trickle.close(r));
    }
  });

  it('retries a 500 and then succeeds', async () => {
    server.script({ kind: 'status', status: 500 });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([500, 200]);
  });

  it('fails fast on 404 without retrying', async () => {
    server.fallback = { kind: 'status', status: 404 };
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'HTTPError', retryable: false, details: { url: server.url, attempts: 1, status: 404 } });
    expect(server.requests.length).toBe(1);
  });

  it('fails fast on 403 without retrying', async () => {
    server.fallback = { kind: 'status', status: 403 };
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'HTTPError', details: { status: 403 } });
    expect(server.requests.length).toBe(1);
  });

  it('retries 429 (honouring Retry-After up to the cap) and 408', async () => {
    server.script({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'status', status: 408 });
    agent.policy = testPolicy({ backoffBaseMs: 1, backoffMaxMs: 50 });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([429, 408, 200]);
    expect(agent.waits[0]).toBe(50); // Retry-After: 1 (s), capped at backoffMaxMs
    expect(agent.waits[1]).toBeLessThanOrEqual(2); // plain backoff, base 1 ms, second retry
  });

  it('gives up after the bounded number of attempts with the last status', async () => {
    agent.policy = testPolicy({ attempts: 3 });
    server.fallback = { kind: 'status', status: 503 };
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'HTTPError', retryable: true, details: { attempts: 3, status: 503, url: server.url } });
    expect(server.requests.length).toBe(3);
  });

  it('resumes when the body is shorter than its Content-Length', async () => {
    server.script({ kind: 'short', missing: 1000 });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([200, 206]);
    expect(server.requests[1].range).toMatch(/^bytes=\d+-$/);
    expect(server.bytesSent()).toBeLessThan(SIZE * 1.05);
  });

  it('reports SizeMismatch when the body is always short', async () => {
    agent.policy = testPolicy({ attempts: 2 });
    server.fallback = { kind: 'short', missing: 1000 };
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'SizeMismatch', details: { attempts: 2 } });
  });

  it('rejects a flipped byte with DigestMismatch, keeping no blob and no partial', async () => {
    server.script({ kind: 'flip', atByte: 12345 });
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err.code).toBe('DigestMismatch');
    expect(err.details.expected).toBe(server.sha256);
    expect(err.details.actual).toMatch(/^[0-9a-f]{64}$/);
    expect(err.details.actual).not.toBe(server.sha256);
    expect(err.message).toContain(server.sha256);
    expect(err.message).toContain(err.details.actual);
    expect(agent.blobStore.has(server.sha256)).toBe(false);
    expect(agent.blobStore.list()).toEqual([]);
    expect(existsSync(agent.paths.blob(server.sha256))).toBe(false);
    expect(partials()).toEqual([]);
    expect(agent.store.downloads.list()).toEqual([]);
    expect(server.requests.length).toBe(1); // not retried: the bytes were wrong, not late
  });

  it('starts over cleanly when the server ignores Range', async () => {
    server.script({ kind: 'drop', atByte: SIZE / 2 }, { kind: 'ignoreRange' });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([200, 200]);
    expect(readFileSync(r.path).equals(server.body)).toBe(true);
  });

  it('resumes with If-Range: Last-Modified when the ETag is weak', async () => {
    const weak = await startChaosServer({ size: SIZE, etagStyle: 'weak' });
    try {
      weak.script({ kind: 'drop', atByte: SIZE / 2 });
      const r = await agent.fetch({ url: weak.url, sha256: weak.sha256 });
      expect(r.sha256).toBe(weak.sha256);
      expect(weak.requests[1].status).toBe(206);
      expect(weak.requests[1].ifRange).toMatch(/GMT$/);
      expect(weak.bytesSent()).toBeLessThan(SIZE * 1.05);
    } finally {
      await weak.stop();
    }
  });

  it('starts over when the ETag changed between requests (If-Range not matched)', async () => {
    server.script({ kind: 'drop', atByte: SIZE / 2 }, { kind: 'newEtag' });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([200, 200]);
  });

  it('starts over when a 206 comes from an object with a different ETag', async () => {
    server.script({ kind: 'drop', atByte: SIZE / 2 }, { kind: 'newEtagIgnoreIfRange' });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.status)).toEqual([200, 206, 200]);
    expect(server.requests[2].range).toBeUndefined();
  });

  it('refuses an archive whose Content-Length exceeds maxBytes before reading the body', async () => {
    agent.policy = testPolicy({ maxBytes: SIZE - 1 });
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'TooLarge', retryable: false });
    expect(server.requests.length).toBe(1);
    expect(server.bytesSent()).toBeLessThan(SIZE);
  });

  it('stops a chunked body at maxBytes with TooLarge', async () => {
    agent.policy = testPolicy({ maxBytes: SIZE / 2 });
    server.fallback = { kind: 'chunked' };
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'TooLarge' });
    expect(server.requests.length).toBe(1);
    expect(agent.blobStore.list()).toEqual([]);
  });

  it('downloads a chunked body (no Content-Length)', async () => {
    server.fallback = { kind: 'chunked' };
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
  });

  it('follows a redirect and checks the target URL against the policy', async () => {
    server.script({ kind: 'redirect', location: '/elsewhere.tar.gz' });
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(server.requests.map((q) => q.path)).toEqual(['/model.tar.gz', '/elsewhere.tar.gz']);

    server.script({ kind: 'redirect', location: 'ftp://127.0.0.1/x' });
    await agent.blobStore.remove(server.sha256);
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err.code).toBe('URLNotAllowed');
  });

  it('refuses a missing digest unless unverified downloads are allowed', async () => {
    const err = await rejection(agent.fetch({ url: server.url }));
    expect(err.code).toBe('MissingDigest');
    expect(server.requests.length).toBe(0);

    agent.policy = testPolicy({ allowUnverified: true });
    const r = await agent.fetch({ url: server.url });
    expect(r.sha256).toBe(server.sha256);
    expect(agent.blobStore.has(server.sha256)).toBe(true);
  });

  it('refuses a digest that is not 64 hex characters', async () => {
    const err = await rejection(agent.fetch({ url: server.url, sha256: 'abc123' }));
    expect(err.code).toBe('InvalidSpec');
    expect(server.requests.length).toBe(0);
  });

  it('reports throttled progress and a final call with the total', async () => {
    agent.policy = testPolicy({ progressIntervalMs: 60_000 });
    const seen: Array<{ bytes: number; totalBytes?: number }> = [];
    await agent.fetch({ url: server.url, sha256: server.sha256 }, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeLessThanOrEqual(2);
    expect(seen.at(-1)).toEqual({ bytes: SIZE, totalBytes: SIZE });
  });

  it('refuses a connection error with retries, then reports DownloadFailed', async () => {
    const url = server.url;
    await server.stop();
    agent.policy = testPolicy({ attempts: 2 });
    const err = await rejection(agent.fetch({ url, sha256: server.sha256 }));
    expect(err).toMatchObject({ code: 'DownloadFailed', details: { attempts: 2, url } });
    server = await startChaosServer({ size: 1024 }); // afterEach stops it
  });
});
