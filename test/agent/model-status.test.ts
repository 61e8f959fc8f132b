import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseMessage, StatusContentSchema, type InferenceModelSpec } from '../../shared/index.js';
import { buildStatus } from '../../agent/admin/status-view.js';
import { parseConfig } from '../../agent/config/load.js';
import type { Config } from '../../agent/config/schema.js';
import { silentLogger } from '../../agent/log.js';
import { modelStatus, toStatusContent } from '../../agent/reconcile/model-status.js';
import { Reporter } from '../../agent/reconcile/report.js';
import type { ServingPort } from '../../agent/reconcile/serving-port.js';
import { specHash } from '../../agent/reconcile/spec-hash.js';
import { openStore, type Store } from '../../agent/store/index.js';
import type { ModelState } from '../../agent/store/models.js';

// Finding 7: the status sent to the cloud (Reporter) and the one `modeld status` shows (the admin
// status view) must be the same status for the same store state.

const SHA1 = '1'.repeat(64);
const SHA2 = '2'.repeat(64);
const spec = (over: Partial<InferenceModelSpec> = {}): InferenceModelSpec => ({
  modelName: 'resnet',
  deployToLayer: 'edge',
  manifest: [
    { version: '1', downloadURL: 'http://127.0.0.1:9/1.tgz', sha256sum: SHA1 },
    { version: '2', downloadURL: 'http://127.0.0.1:9/2.tgz', sha256sum: SHA2 },
  ],
  targetVersion: '2',
  ...over,
});

let dir: string;
let store: Store;
let config: Config;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'model-status-'));
  store = openStore(join(dir, 'state.db'));
  config = parseConfig({ node: { name: 'n1' }, stateDir: dir });
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A serving layer that routes `ns/name` to `version` (the read side of ServingPort only). */
const routingTo = (version: string | undefined): Pick<ServingPort, 'state'> => ({
  state: () => (version === undefined ? undefined : { version, replicas: 1, readyReplicas: 1, url: 'http://n1:8000/v2/models/resnet' }),
});

function given(desired: InferenceModelSpec, model: Partial<ModelState>, installed: string[]): void {
  store.specs.put({ namespace: 'default', name: 'resnet', uid: 'u1', generation: 3, spec: desired, msgId: 'm3', source: 'cloud', updatedAt: 1 });
  for (const v of installed) store.versions.put({ namespace: 'default', name: 'resnet', version: v, sha256: v === '1' ? SHA1 : SHA2 });
  // Rows name trees (version + digest), as the runner records them.
  const sha = (v?: string) => (v === undefined ? undefined : v === '1' ? SHA1 : SHA2);
  const trees = { servingSha256: sha(model.servingVersion), previousSha256: sha(model.previousVersion), heldSha256: sha(model.heldVersion), failedSha256: sha(model.failedVersion) };
  store.models.update('default', 'resnet', { phase: 'Serving', observedGeneration: 3, ...trees, ...model });
}

/** What both must agree on. */
const essentials = (s: { phase: string; reason?: string; message?: string; servingVersion?: string; heldVersion?: string; versions?: Array<{ version: string; state: string }> }) => ({
  phase: s.phase,
  reason: s.reason,
  message: s.message,
  servingVersion: s.servingVersion,
  heldVersion: s.heldVersion,
  versions: (s.versions ?? []).map((v) => ({ version: v.version, state: v.state })),
});

/** The status the Reporter sends and the one `modeld status` shows, from the same store state. */
function bothViews(serving?: Pick<ServingPort, 'state'>) {
  const m = store.models.get('default', 'resnet')!;
  const reporter = new Reporter({ config, store, log: silentLogger(), serving: serving as ServingPort | undefined, enqueue: () => {} });
  // Re-reports what the row holds, as intake does for a spec that arrives again unchanged.
  const reported = reporter.report('default', 'resnet', { phase: m.phase, reason: m.reason, message: m.message });
  const shown = buildStatus({ store, serving, node: 'n1', stateDir: dir, daemon: serving !== undefined }, { namespace: 'default', name: 'resnet' }).models[0];
  return { reported: essentials(reported as never), shown: essentials(shown as never) };
}

describe('one status for the cloud and for `modeld status` (finding 7)', () => {
  it('a rollback hold in force: both name the held version', () => {
    given(spec(), { servingVersion: '2', previousVersion: '1', heldVersion: '1', heldSpecHash: specHash(spec()) }, ['1', '2']);
    const { reported, shown } = bothViews();
    expect(reported).toEqual(shown);
    expect(shown).toMatchObject({ heldVersion: '1', versions: [{ version: '1', state: 'previous' }, { version: '2', state: 'serving' }] });
  });

  it('a hold made under an older spec, or on a version no longer installed, is not in force', () => {
    given(spec({ replicas: 2 }), { servingVersion: '2', previousVersion: '1', heldVersion: '1', heldSpecHash: specHash(spec()) }, ['1', '2']);
    expect(bothViews().shown.heldVersion).toBeUndefined();
    store.models.update('default', 'resnet', { heldSpecHash: specHash(spec({ replicas: 2 })) });
    store.versions.delete('default', 'resnet', { version: '1', sha256: SHA1 });
    const { reported, shown } = bothViews();
    expect(reported).toEqual(shown);
    expect(shown.heldVersion).toBeUndefined();
  });

  it('a failure under an older spec no longer marks the version failed, in either', () => {
    given(spec({ replicas: 2 }), { servingVersion: '1', failedVersion: '2', failedSpecHash: specHash(spec()), failedReason: 'NotReady', failedMessage: 'version 2: not ready' }, ['1', '2']);
    const { reported, shown } = bothViews();
    expect(reported).toEqual(shown);
    expect(shown.versions).toEqual([{ version: '1', state: 'serving' }, { version: '2', state: 'installed' }]);
  });

  it('a failure under the current spec marks the version failed, in both', () => {
    given(spec(), { phase: 'Failed', reason: 'NotReady', servingVersion: '1', failedVersion: '2', failedSpecHash: specHash(spec()), failedReason: 'NotReady', failedMessage: 'version 2: not ready' }, ['1', '2']);
    const { reported, shown } = bothViews();
    expect(reported).toEqual(shown);
    expect(shown).toMatchObject({ phase: 'Failed', reason: 'NotReady', versions: [{ version: '1', state: 'serving' }, { version: '2', state: 'failed' }] });
  });

  it('the serving version is what the serving layer routes to when the daemon knows it', () => {
    // Traffic moved to 2 (start) and the row is not switched yet: a status made now (a failed switch) says 2.
    given(spec(), { phase: 'Starting', servingVersion: '1', previousVersion: undefined }, ['1', '2']);
    const { reported, shown } = bothViews(routingTo('2'));
    expect(reported).toEqual(shown);
    expect(shown.servingVersion).toBe('2');
  });

  it('nothing serves after a restart until the serving layer runs the version again', () => {
    given(spec(), { phase: 'Starting', servingVersion: '2', previousVersion: '1' }, ['1', '2']);
    const { reported, shown } = bothViews(routingTo(undefined));
    expect(reported).toEqual(shown);
    expect(shown.servingVersion).toBeUndefined();
  });

  it('a long failure message is cut to the same length in both', () => {
    given(spec(), { phase: 'Failed', reason: 'StartFailed', message: 'x'.repeat(10_000), servingVersion: '1' }, ['1']);
    const { reported, shown } = bothViews();
    expect(reported).toEqual(shown);
    expect(shown.message).toHaveLength(4096);
  });

  it('without a serving layer (read-only CLI, delivery-only node) the recorded serving version stands', () => {
    given(spec(), { servingVersion: '2', previousVersion: '1' }, ['1', '2']);
    const { reported, shown } = bothViews();
    expect(reported).toEqual(shown);
    expect(shown).toMatchObject({ phase: 'Serving', servingVersion: '2', versions: [{ version: '1', state: 'previous' }, { version: '2', state: 'serving' }] });
  });

  it('a refused message is answered Failed without changing what `modeld status` shows', () => {
    given(spec(), { servingVersion: '2', previousVersion: '1' }, ['1', '2']);
    const reporter = new Reporter({ config, store, log: silentLogger(), enqueue: () => {} });
    const answer = reporter.report('default', 'resnet', { phase: 'Failed', reason: 'InvalidSpec', message: 'bad update content', parentMsgId: 'bad-1', observedGeneration: 4 });
    expect(answer).toMatchObject({ phase: 'Failed', reason: 'InvalidSpec', observedGeneration: 4, servingVersion: '2' });
    const shown = buildStatus({ store, node: 'n1', stateDir: dir, daemon: false }, { namespace: 'default', name: 'resnet' }).models[0];
    expect(shown).toMatchObject({ phase: 'Serving', reason: undefined, observedGeneration: 3, servingVersion: '2' });
  });

  it("a step's status names the spec's target, not the version the step works on", () => {
    // Restoring version 1 after a restart while the spec targets 2.
    given(spec(), { phase: 'Serving', servingVersion: '1' }, ['1']);
    const reporter = new Reporter({ config, store, log: silentLogger(), enqueue: () => {} });
    expect(reporter.report('default', 'resnet', { phase: 'Starting', version: '1' }).targetVersion).toBe('2');
    expect(reporter.report('default', 'resnet', { phase: 'Starting', targetVersion: '1' }).targetVersion).toBe('2');
  });

  it('what the Reporter sends is a valid status message, held version included', () => {
    given(spec(), { servingVersion: '2', previousVersion: '1', heldVersion: '1', heldSpecHash: specHash(spec()) }, ['1', '2']);
    const sent: string[] = [];
    new Reporter({ config, store, log: silentLogger(), enqueue: (_t, p) => sent.push(p) }).report('default', 'resnet', { phase: 'Serving', reason: 'RolledBack' });
    const parsed = parseMessage(sent[0]);
    expect(parsed.ok).toBe(true);
    expect(parsed.ok && parsed.message.content).toMatchObject({ heldVersion: '1', reason: 'RolledBack', uid: 'u1' });
    // Only the wire's fields: what the node's own view adds stays on the node.
    expect(Object.keys(JSON.parse(sent[0]).content)).not.toContain('source');
  });
});

describe('modelStatus, on plain data', () => {
  const desired = { namespace: 'default', name: 'resnet', uid: 'u1', generation: 3, spec: spec(), msgId: 'm3', source: 'cloud' as const, updatedAt: 1 };
  const row: ModelState = { namespace: 'default', name: 'resnet', phase: 'Serving', servingVersion: '2', previousVersion: '1', observedGeneration: 3, updatedAt: 5 };
  const installed = ['1', '2'].map((version) => ({ namespace: 'default', name: 'resnet', version, sha256: version === '1' ? SHA1 : SHA2, installedAt: 1 }));
  const base = { node: 'n1', namespace: 'default', name: 'resnet', desired, model: row, installed, time: 't' };

  it('says Pending with nothing recorded, and nothing serving', () => {
    expect(modelStatus({ ...base, model: undefined, installed: [] })).toMatchObject({ phase: 'Pending', observedGeneration: 0, targetVersion: '2', replicas: 1, readyReplicas: 0, versions: [] });
  });

  it('takes phase, reason, message and generation from the refused message it answers, the rest from the rows', () => {
    const s = modelStatus({ ...base, answer: { phase: 'Failed', reason: 'BadMessage', message: 'not JSON', observedGeneration: 7 } });
    expect(s).toMatchObject({ phase: 'Failed', reason: 'BadMessage', message: 'not JSON', observedGeneration: 7, servingVersion: '2', generation: 3, source: 'cloud' });
  });

  it('names the last error only under the spec it happened under', () => {
    const failedRow = { ...row, failedVersion: '2', failedSpecHash: specHash(spec()), failedReason: 'NotReady' as const, failedMessage: 'm' };
    expect(modelStatus({ ...base, model: failedRow }).lastError).toEqual({ version: '2', reason: 'NotReady', message: 'm' });
    expect(modelStatus({ ...base, model: failedRow, desired: { ...desired, spec: spec({ replicas: 3 }) } }).lastError).toBeUndefined();
  });

  it('with a serving layer that routes nothing, serves nothing; with none to ask, the row stands', () => {
    expect(modelStatus({ ...base, serving: {} }).servingVersion).toBeUndefined();
    expect(modelStatus({ ...base, serving: { running: { version: '1', replicas: 2, readyReplicas: 1, url: 'u' } } })).toMatchObject({ servingVersion: '1', readyReplicas: 1, url: 'u' });
    expect(modelStatus(base).servingVersion).toBe('2');
  });

  it('says which onnxruntime backend serves a model in the runtime host, on the wire too (an optional field)', () => {
    const running = { version: '2', replicas: 1, readyReplicas: 1, url: 'u' };
    const wasm = modelStatus({ ...base, serving: { running: { ...running, backend: 'wasm' } } });
    expect(wasm.backend).toBe('wasm');
    expect(toStatusContent(wasm).backend).toBe('wasm');
    expect(StatusContentSchema.parse(toStatusContent(wasm)).backend).toBe('wasm');
    // A process of its own or an external runtime: not known, not said.
    const external = toStatusContent(modelStatus({ ...base, serving: { running } }));
    expect(external.backend).toBeUndefined();
    expect(StatusContentSchema.safeParse(external).success).toBe(true);
  });
});
