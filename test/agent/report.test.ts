import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../agent/config/load.js';
import { silentLogger } from '../../agent/log.js';
import { Reporter } from '../../agent/reconcile/report.js';
import { openStore, type Store } from '../../agent/store/index.js';

let dir: string;
let store: Store;
let online: boolean;
let reporter: Reporter;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'report-'));
  store = openStore(join(dir, 'state.db'));
  online = true;
  const config = parseConfig({ node: { name: 'n1' }, stateDir: dir });
  reporter = new Reporter({ config, store, log: silentLogger(), enqueue: (t, p) => store.outbox.add(t, p), online: () => online });
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const sent = () => store.outbox.peek(1000).map((e) => JSON.parse(e.payload).content as { phase: string; progress?: { bytes: number } });

describe('status reporter', () => {
  it('keeps every phase change in the outbox, in order, while the broker is away', () => {
    online = false;
    for (const phase of ['Pending', 'Downloading', 'Verifying', 'Installing', 'Serving'] as const) reporter.report('default', 'm', { phase });
    expect(sent().map((s) => s.phase)).toEqual(['Pending', 'Downloading', 'Verifying', 'Installing', 'Serving']);
  });

  it('does not pile byte progress up in the outbox while the broker is away', () => {
    online = false;
    for (let i = 1; i <= 50; i++) reporter.report('default', 'm', { phase: 'Downloading', progress: { bytes: i * 1000, totalBytes: 50_000 } });
    expect(sent()).toEqual([]);
    online = true;
    reporter.report('default', 'm', { phase: 'Downloading', progress: { bytes: 51_000, totalBytes: 60_000 } });
    expect(sent().map((s) => s.progress?.bytes)).toEqual([51_000]);
  });

  it('answers a refused message without changing the model\'s recorded state', () => {
    reporter.report('default', 'm', { phase: 'Serving' });
    reporter.report('default', 'm', { phase: 'Failed', reason: 'BadMessage', parentMsgId: 'x' });
    expect(store.models.get('default', 'm')?.phase).toBe('Serving');
    expect(sent().map((s) => s.phase)).toEqual(['Serving', 'Failed']);
  });
});
