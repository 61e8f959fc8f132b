import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { makeTempRoot, openAgent, rejection, testPolicy, type Agentish } from './fetch-fixture.js';

let server: ChaosServer;
let cleanup: () => Promise<void>;
let root: string;

beforeEach(async () => {
  server = await startChaosServer({ size: 4 * 1024 * 1024 });
  const t = await makeTempRoot();
  cleanup = t.cleanup;
  root = t.root;
});

afterEach(async () => {
  await server.stop();
  await cleanup();
});

describe('bandwidth cap and free space', () => {
  it('respects the bandwidth cap (lower bound on the time taken)', async () => {
    const agent = openAgent(root, testPolicy({ bandwidth: 1024 * 1024 }));
    try {
      const size = 2 * 1024 * 1024;
      const small = await startChaosServer({ size });
      try {
        const t0 = performance.now();
        const r = await agent.fetch({ url: small.url, sha256: small.sha256 });
        const seconds = (performance.now() - t0) / 1000;
        expect(r.sha256).toBe(small.sha256);
        expect(seconds).toBeGreaterThanOrEqual((size / (1024 * 1024)) * 0.5);
      } finally {
        await small.stop();
      }
    } finally {
      agent.close();
    }
  });

  it('refuses with NoSpace before any request when the reserve cannot be kept', async () => {
    const agent = openAgent(root, testPolicy({ reserveBytes: Number.MAX_SAFE_INTEGER }));
    try {
      const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
      expect(err).toMatchObject({ code: 'NoSpace', details: { url: server.url } });
      expect(err.details.needBytes).toBeGreaterThan(err.details.freeBytes);
      expect(server.requests).toHaveLength(0);
      expect(agent.store.downloads.list()).toEqual([]);
    } finally {
      agent.close();
    }
  });
});

// A real full disk: a 2 MiB tmpfs holds the state directory (the database lives elsewhere so
// SQLite itself is not what fills up). Needs root and mount(2); skipped with a reason otherwise.
describe('on a real full disk (tmpfs)', () => {
  let mnt = '';
  let mountError = '';
  let removeMountDir = async () => {};
  beforeAll(async () => {
    const t = await makeTempRoot();
    removeMountDir = t.cleanup;
    mnt = join(t.root, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (err) {
      mountError = String((err as { stderr?: Buffer }).stderr ?? err).trim();
      console.log(`skipping the tmpfs full-disk tests: cannot mount a tmpfs here (${mountError})`);
    }
  });
  afterAll(async () => {
    try {
      if (!mountError && mnt) execFileSync('umount', ['-l', mnt]); // lazy: a busy mount goes too
    } finally {
      await removeMountDir();
    }
  });

  const withAgent = async (fn: (a: Agentish) => Promise<void>) => {
    const state = join(mnt, `state-${randomBytes(4).toString('hex')}`);
    const agent = openAgent(state, testPolicy(), join(root, 'state.db'));
    try {
      await fn(agent);
    } finally {
      agent.close();
      execFileSync('rm', ['-rf', state]);
    }
  };

  it('a download that fills the disk fails with NoSpace, keeps a sound partial and harms no stored blob', async (ctx) => {
    if (mountError) return ctx.skip(`cannot mount a tmpfs: ${mountError}`);
    await withAgent(async (agent) => {
      // A blob already in the store must survive the full disk untouched.
      const old = randomBytes(100 * 1024);
      const oldSha = createHash('sha256').update(old).digest('hex');
      writeFileSync(join(root, 'old.bin'), old);
      await agent.blobStore.importFile(join(root, 'old.bin'), { expectedSha256: oldSha });

      server.fallback = { kind: 'chunked' }; // no Content-Length: the up-front check cannot see it coming
      const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
      expect(err.code).toBe('NoSpace');
      expect(server.requests).toHaveLength(1); // not retried against a full disk

      const partial = agent.paths.partial(server.sha256);
      expect(existsSync(partial)).toBe(true);
      const kept = readFileSync(partial);
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.equals(server.body.subarray(0, kept.length))).toBe(true);
      const row = agent.store.downloads.get(server.sha256)!;
      expect(row.bytesDone).toBeLessThanOrEqual(kept.length);

      expect(agent.blobStore.has(server.sha256)).toBe(false);
      expect(agent.blobStore.has(oldSha)).toBe(true);
      expect(readFileSync(agent.blobStore.pathOf(oldSha)).equals(old)).toBe(true);
    });
  });

  it('a download announced larger than the free space is refused with NoSpace before its body', async (ctx) => {
    if (mountError) return ctx.skip(`cannot mount a tmpfs: ${mountError}`);
    await withAgent(async (agent) => {
      const err = await rejection(agent.fetch({ url: server.url, sha256: server.sha256 }));
      expect(err.code).toBe('NoSpace');
      expect(err.details.needBytes).toBe(server.body.length);
      expect(server.requests).toHaveLength(1);
      expect(existsSync(agent.paths.partial(server.sha256))).toBe(false);
    });
  });
});
