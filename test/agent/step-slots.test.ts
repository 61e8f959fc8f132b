import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../agent/config/load.js';
import { BlobStore } from '../../agent/fetch/blob-store.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { NodeLimits } from '../../agent/reconcile/node-limits.js';
import { Reporter } from '../../agent/reconcile/report.js';
import { runStep, type StepDeps } from '../../agent/reconcile/steps.js';
import { openStore, type Store } from '../../agent/store/index.js';
import type { StatusContent } from '../../shared/index.js';
import { makeTree, packDir } from '../helpers/archives.js';

// The steps take their node-wide slot (agent/reconcile/node-limits.ts): two models' installs with
// limits.installs 1 run one after the other, the second saying it waits. Real store, real archives.

let root: string | undefined;
let store: Store | undefined;
afterEach(() => {
  store?.close();
  store = undefined;
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

describe('steps under node-wide limits', () => {
  it('with limits.installs 1, a second model installs only after the first, and says it waits meanwhile', async () => {
    root = mkdtempSync(join(tmpdir(), 'step-slots-'));
    const config = parseConfig({ stateDir: join(root, 'state'), fetch: { reserveBytes: 0 } });
    const paths = statePaths(config.stateDir);
    mkdirSync(paths.root, { recursive: true });
    store = openStore(paths.db);
    const log = silentLogger();
    const blobStore = new BlobStore({ paths, blobs: store.blobs, log });
    const statuses: StatusContent[] = [];
    const reporter = new Reporter({ config, store, log, enqueue: (_t, payload) => void statuses.push(JSON.parse(payload).content) });
    const deps: StepDeps = { config, paths, store, log, blobStore, fetchPolicy: fetchPolicyFromConfig(config), reporter, limits: new NodeLimits({ fetches: 2, installs: 1, starts: 1 }) };

    // Two archives in the store, as after their downloads (4 MiB each: unpacking takes a moment).
    const shas: string[] = [];
    for (const m of ['a', 'b']) {
      const src = join(root, `src-${m}`);
      await makeTree(src, { 'weights.bin': randomBytes(4 * 1024 * 1024), 'name.txt': m });
      const file = await packDir(src, join(root, `${m}.tar`));
      const body = readFileSync(file);
      const sha = createHash('sha256').update(body).digest('hex');
      await blobStore.adopt(file, sha, body.length, `file://${file}`);
      shas.push(sha);
    }
    const ctx = () => ({ signal: new AbortController().signal, learnt: new Map<string, string>() });
    const model = (name: string) => ({ namespace: 'default', name, modelName: name });
    const installedAt: Record<string, boolean> = {};
    const a = runStep({ kind: 'install', version: '1', sha256: shas[0] }, model('a'), deps, ctx());
    const b = runStep({ kind: 'install', version: '1', sha256: shas[1] }, model('b'), deps, ctx());
    // When b really starts installing, a's version is complete already.
    const origReport = reporter.report.bind(reporter);
    reporter.report = (ns, name, u) => {
      if (name === 'b' && u.phase === 'Installing' && !u.reason) installedAt.aDoneWhenBStarted = existsSync(join(paths.treeDir('default', 'a', { version: '1', sha256: shas[0] }), '.modeld-complete'));
      return origReport(ns, name, u);
    };
    await Promise.all([a, b]);

    const seq = statuses.map((s) => `${s.name} ${s.phase} ${s.reason ?? '-'} ${s.message ?? ''}`.trim());
    expect(seq).toEqual(['a Installing -', 'b Installing WaitingForSlot waiting for an install slot (1 of 1 in use)', 'b Installing -']);
    expect(installedAt.aDoneWhenBStarted).toBe(true);
    expect(existsSync(join(paths.treeDir('default', 'b', { version: '1', sha256: shas[1] }), 'name.txt'))).toBe(true);
  });
});
