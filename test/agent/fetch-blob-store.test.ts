import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTempRoot, openAgent, rejection, testPolicy, type Agentish } from './fetch-fixture.js';

let agent: Agentish;
let cleanup: () => Promise<void>;
let src: string;
let body: Buffer;
let sha: string;

beforeEach(async () => {
  const t = await makeTempRoot();
  cleanup = t.cleanup;
  agent = openAgent(join(t.root, 'state'), testPolicy());
  body = randomBytes(3 * 1024 * 1024 + 17);
  sha = createHash('sha256').update(body).digest('hex');
  src = join(t.root, 'seed.tar.gz');
  writeFileSync(src, body);
});

afterEach(async () => {
  agent.close();
  await cleanup();
});

const partials = () => (existsSync(agent.paths.partialDir) ? readdirSync(agent.paths.partialDir) : []);

describe('BlobStore', () => {
  it('importFile verifies, stores at blobs/sha256/<ab>/<rest> and records the blob', async () => {
    const progress: number[] = [];
    const r = await agent.blobStore.importFile(src, { expectedSha256: sha.toUpperCase(), onProgress: (b) => progress.push(b) });
    expect(r).toEqual({ sha256: sha, size: body.length, path: join(agent.root, 'blobs/sha256', sha.slice(0, 2), sha.slice(2)), alreadyPresent: false });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(progress.at(-1)).toBe(body.length);
    expect(agent.blobStore.has(sha)).toBe(true);
    expect(agent.blobStore.list()).toMatchObject([{ sha256: sha, size: body.length, source: `seed:${src}` }]);
    expect(partials()).toEqual([]);
  });

  it('importFile of a blob already present reports it and copies nothing', async () => {
    await agent.blobStore.importFile(src, { expectedSha256: sha });
    const again = await agent.blobStore.importFile(src, { expectedSha256: sha });
    expect(again.alreadyPresent).toBe(true);
  });

  it('importFile without a digest stores under the computed digest', async () => {
    const r = await agent.blobStore.importFile(src);
    expect(r.sha256).toBe(sha);
  });

  it('importFile rejects a mismatch and leaves nothing behind', async () => {
    const wrong = 'ab'.repeat(32);
    const err = await rejection(agent.blobStore.importFile(src, { expectedSha256: wrong }));
    expect(err).toMatchObject({ code: 'DigestMismatch', details: { expected: wrong, actual: sha } });
    expect(agent.blobStore.list()).toEqual([]);
    expect(existsSync(agent.blobStore.pathOf(wrong))).toBe(false);
    expect(existsSync(agent.blobStore.pathOf(sha))).toBe(false);
    expect(partials()).toEqual([]);
  });

  it('importFile of a missing file fails with a clear reason', async () => {
    const err = await rejection(agent.blobStore.importFile(join(agent.root, 'nope.tgz')));
    expect(err.code).toBe('DownloadFailed');
    expect(err.message).toMatch(/ENOENT/);
  });

  it('has() is false when the file is gone or has the wrong size, despite the record', async () => {
    const r = await agent.blobStore.importFile(src, { expectedSha256: sha });
    chmodSync(r.path, 0o644);
    writeFileSync(r.path, body.subarray(0, 10));
    expect(agent.blobStore.has(sha)).toBe(false);
    unlinkSync(r.path);
    expect(agent.blobStore.has(sha)).toBe(false);
  });

  it('remove() deletes the file and the record', async () => {
    const r = await agent.blobStore.importFile(src, { expectedSha256: sha });
    await agent.blobStore.remove(sha);
    expect(existsSync(r.path)).toBe(false);
    expect(agent.blobStore.list()).toEqual([]);
    await agent.blobStore.remove(sha); // idempotent
  });

  it('adopt refuses a temp file whose size is not the one given', async () => {
    const tmp = join(agent.root, 'tmp-blob');
    writeFileSync(tmp, body);
    const err = await rejection(agent.blobStore.adopt(tmp, sha, body.length + 1, 'test'));
    expect(err.code).toBe('SizeMismatch');
    expect(agent.blobStore.has(sha)).toBe(false);
  });
});

describe('fetchBlob with file: URLs', () => {
  it('copies a local file when file: is allowed, verifying the digest', async () => {
    agent.policy = testPolicy({ allowedSchemes: ['file'] });
    const r = await agent.fetch({ url: pathToFileURL(src).href, sha256: sha });
    expect(r).toMatchObject({ sha256: sha, size: body.length, fromStore: false, fetchedBytes: body.length });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    const again = await agent.fetch({ url: pathToFileURL(src).href, sha256: sha });
    expect(again.fromStore).toBe(true);
  });

  it('rejects a local file with the wrong digest and stores nothing', async () => {
    agent.policy = testPolicy({ allowedSchemes: ['file'] });
    const err = await rejection(agent.fetch({ url: pathToFileURL(src).href, sha256: 'cd'.repeat(32) }));
    expect(err.code).toBe('DigestMismatch');
    expect(agent.blobStore.list()).toEqual([]);
    expect(partials()).toEqual([]);
  });

  it('refuses a local file over maxBytes', async () => {
    agent.policy = testPolicy({ allowedSchemes: ['file'], maxBytes: 1024 });
    const err = await rejection(agent.fetch({ url: pathToFileURL(src).href, sha256: sha }));
    expect(err.code).toBe('TooLarge');
  });
});
