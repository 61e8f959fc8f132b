import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../agent/store/index.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { makeTempRoot, openAgent, rejection, testPolicy, until, type Agentish } from './fetch-fixture.js';

const SIZE = 4 * 1024 * 1024;

let server: ChaosServer;
let agent: Agentish;
let cleanup: () => Promise<void>;
let child: ProcessTree | undefined;

beforeEach(async () => {
  server = await startChaosServer({ size: SIZE });
  const t = await makeTempRoot();
  cleanup = t.cleanup;
  agent = openAgent(t.root, testPolicy({ stallTimeoutMs: 600_000 }));
});

afterEach(async () => {
  await child?.end();
  child = undefined;
  agent.close();
  await server.stop();
  await cleanup();
});

/** Starts a fetch that stalls at `atByte`, waits until those bytes are on disk, aborts it. */
async function abortAt(atByte: number) {
  server.script({ kind: 'stall', atByte });
  const ctl = new AbortController();
  let bytes = 0;
  const p = agent.fetch({ url: server.url, sha256: server.sha256 }, { signal: ctl.signal, onProgress: (q) => (bytes = q.bytes) });
  await until(() => bytes >= atByte, 'the download to reach the stall point');
  ctl.abort();
  return rejection(p);
}

describe('fetchBlob resume and cancellation', () => {
  it('stops promptly on abort, keeps the partial bytes and records them', async () => {
    const err = await abortAt(SIZE / 2);
    expect(err.code).toBe('Cancelled');
    const partial = agent.paths.partial(server.sha256);
    expect(statSync(partial).size).toBe(SIZE / 2);
    expect(readFileSync(partial).equals(server.body.subarray(0, SIZE / 2))).toBe(true);
    expect(agent.store.downloads.get(server.sha256)).toMatchObject({ url: server.url, bytesDone: SIZE / 2, totalBytes: SIZE, etag: server.etag() });
    expect(agent.blobStore.has(server.sha256)).toBe(false);
  });

  it('resumes after a restart (new store and BlobStore on the same dir) re-fetching under 5%', async () => {
    await abortAt(Math.floor(SIZE * 0.6));
    const sentBefore = server.bytesSent();
    agent.reopen();
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(readFileSync(r.path).equals(server.body)).toBe(true);
    const refetched = server.bytesSent() - sentBefore - (SIZE - sentBefore);
    expect(refetched).toBeLessThan(SIZE * 0.05);
    expect(r.resumedFrom).toBeGreaterThan(SIZE * 0.55);
    expect(server.requests[1]).toMatchObject({ status: 206, ifRange: server.etag() });
  });

  it('resumes after kill -9 of the downloading process, re-fetching under 5%', async () => {
    const stallAt = Math.floor(SIZE * 0.5);
    server.script({ kind: 'stall', atByte: stallAt });
    child = spawnTree(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fetch-child.ts'), agent.root, server.url, server.sha256], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    await until(() => server.requests[0]?.bytesSent >= stallAt, 'the server to send up to the stall point', 60_000);
    // Wait until the child has recorded most of it (it checkpoints after fdatasync), then kill -9.
    const peek = openStore(agent.paths.db);
    try {
      await until(() => (peek.downloads.get(server.sha256)?.bytesDone ?? 0) >= stallAt * 0.97, 'a checkpoint near the stall point', 60_000);
    } finally {
      peek.close();
    }
    child.child.kill('SIGKILL');
    await child.exited;

    agent.reopen();
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.sha256).toBe(server.sha256);
    expect(stallAt - r.resumedFrom).toBeLessThan(SIZE * 0.05);
    expect(server.bytesSent() - SIZE).toBeLessThan(SIZE * 0.05);
  });

  it('cuts a partial file longer than the recorded progress back to the recorded length', async () => {
    await abortAt(SIZE / 2);
    // Bytes past the checkpoint may be garbage after a power cut: simulate that.
    appendFileSync(agent.paths.partial(server.sha256), Buffer.alloc(100_000, 0xaa));
    agent.reopen();
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.resumedFrom).toBe(SIZE / 2);
    expect(readFileSync(r.path).equals(server.body)).toBe(true);
  });

  it('starts over when the partial file has no download record', async () => {
    await abortAt(SIZE / 2);
    agent.store.downloads.delete(server.sha256);
    agent.reopen();
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r.resumedFrom).toBe(0);
    expect(server.requests[1].range).toBeUndefined();
    expect(r.sha256).toBe(server.sha256);
  });

  it('starts over when the record is for another URL', async () => {
    await abortAt(SIZE / 2);
    const r = await agent.fetch({ url: server.urlFor('/mirror.tar.gz'), sha256: server.sha256 });
    expect(r.resumedFrom).toBe(0);
    expect(r.sha256).toBe(server.sha256);
  });

  it('finishes from disk without a request when all bytes were already there', async () => {
    await abortAt(SIZE / 2);
    // As if the process died after the last byte was recorded but before the blob was adopted.
    appendFileSync(agent.paths.partial(server.sha256), server.body.subarray(SIZE / 2));
    const row = agent.store.downloads.get(server.sha256)!;
    agent.store.downloads.put({ ...row, bytesDone: SIZE });
    const before = server.requests.length;
    agent.reopen();
    const r = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(r).toMatchObject({ sha256: server.sha256, resumedFrom: SIZE, fetchedBytes: 0, fromStore: false });
    expect(server.requests.length).toBe(before);
  });

  it('a resumed download whose early bytes were corrupted on disk ends in DigestMismatch, nothing stored', async () => {
    await abortAt(SIZE / 2);
    const partial = agent.paths.partial(server.sha256);
    const buf = readFileSync(partial);
    buf[10] ^= 0xff;
    writeFileSync(partial, buf);
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
    expect(err.code).toBe('DigestMismatch');
    expect(existsSync(partial)).toBe(false);
    expect(agent.blobStore.has(server.sha256)).toBe(false);
    expect(agent.store.downloads.list()).toEqual([]);
  });

  it('two concurrent fetches of the same digest end with one good blob and one download', async () => {
    const [a, b] = await Promise.all([
      agent.fetch({ url: server.url, sha256: server.sha256 }),
      agent.fetch({ url: server.url, sha256: server.sha256 }),
    ]);
    expect(a.sha256).toBe(server.sha256);
    expect(b.sha256).toBe(server.sha256);
    expect([a.fromStore, b.fromStore].sort()).toEqual([false, true]);
    expect(server.requests.length).toBe(1);
    expect(agent.blobStore.list()).toHaveLength(1);
    expect(readFileSync(a.path).equals(server.body)).toBe(true);
  });

  it('a cancelled waiter does not keep the lock: a later fetch completes', async () => {
    server.script({ kind: 'stall', atByte: SIZE / 2 });
    let bytes = 0;
    const ctl1 = new AbortController();
    const first = agent.fetch({ url: server.url, sha256: server.sha256 }, { signal: ctl1.signal, onProgress: (q) => (bytes = q.bytes) });
    await until(() => bytes >= SIZE / 2, 'first download to stall');
    const ctl2 = new AbortController();
    const second = agent.fetch({ url: server.url, sha256: server.sha256 }, { signal: ctl2.signal });
    ctl2.abort();
    expect((await rejection(second)).code).toBe('Cancelled');
    ctl1.abort();
    expect((await rejection(first)).code).toBe('Cancelled');
    const third = await agent.fetch({ url: server.url, sha256: server.sha256 });
    expect(third).toMatchObject({ sha256: server.sha256, resumedFrom: SIZE / 2 });
  });

  it('an abort during the backoff wait ends the call with Cancelled at once', async () => {
    agent.policy = testPolicy({ backoffBaseMs: 600_000, backoffMaxMs: 600_000 });
    server.fallback = { kind: 'status', status: 503, retryAfter: '600' };
    const ctl = new AbortController();
    const p = agent.fetch({ url: server.url, sha256: server.sha256 }, { signal: ctl.signal });
    await until(() => agent.waits.length === 1, 'the first backoff wait');
    ctl.abort();
    expect((await rejection(p)).code).toBe('Cancelled');
    expect(server.requests).toHaveLength(1);
  });

  it('an already aborted signal makes no request', async () => {
    const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }, { signal: AbortSignal.abort() }));
    expect(err.code).toBe('Cancelled');
    expect(server.requests).toHaveLength(0);
  });
});
