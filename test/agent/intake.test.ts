import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeEnvelope, parseMessage, type ModelContent } from '../../shared/index.js';
import { parseConfig } from '../../agent/config/load.js';
import type { Config } from '../../agent/config/schema.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { checkUrl } from '../../agent/fetch/url-policy.js';
import { silentLogger } from '../../agent/log.js';
import { Intake } from '../../agent/reconcile/intake.js';
import { Reporter } from '../../agent/reconcile/report.js';
import { openStore, type Store } from '../../agent/store/index.js';

const SHA = 'c'.repeat(64);
let dir: string;
let store: Store;
let config: Config;
let sent: Array<{ topic: string; body: any }>;
let kicks: string[];
let intake: Intake;

const TOPIC = 'ai/inferencemodel/n1/default/resnet';
const content = (over: Partial<ModelContent['spec']> = {}, generation = 1): any => ({
  metadata: { name: 'resnet', namespace: 'default', uid: 'u1', generation },
  spec: {
    modelName: 'resnet',
    deployToLayer: 'edge',
    nodeSelector: { zone: 'a' },
    manifest: [{ version: '1', downloadURL: 'http://127.0.0.1:9/1.tgz', sha256sum: SHA }],
    ...over,
  },
});
const msg = (operation: string, c: unknown) => JSON.stringify(makeEnvelope(operation as 'update', c as ModelContent, { source: 'test', resource: 'default/inferencemodel/resnet' }));
const snapshot = () => JSON.stringify({ specs: store.specs.list().map((s) => ({ ...s, updatedAt: 0 })), models: store.models.list().map((m) => ({ ...m, updatedAt: 0 })) });
const statuses = () => sent.map((s) => s.body.content);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'intake-'));
  store = openStore(join(dir, 'state.db'));
  config = parseConfig({ node: { name: 'n1', labels: { zone: 'a' } }, stateDir: dir });
  sent = [];
  kicks = [];
  const policy = fetchPolicyFromConfig(config);
  const reporter = new Reporter({ config, store, log: silentLogger(), enqueue: (topic, payload) => sent.push({ topic, body: JSON.parse(payload) }) });
  intake = new Intake({
    config, store, log: silentLogger(), reporter,
    checkUrl: (url) => void checkUrl(url, policy),
    kick: (ns, name) => kicks.push(`${ns}/${name}`),
  });
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('intake', () => {
  it('accepts an update, stores it as desired and starts a reconcile', () => {
    const out = intake.handle(TOPIC, msg('update', content()));
    expect(out).toEqual({ accepted: true, changed: ['default/resnet'] });
    expect(store.specs.get('default', 'resnet')?.generation).toBe(1);
    expect(kicks).toEqual(['default/resnet']);
    expect(statuses()[0]).toMatchObject({ phase: 'Pending', node: 'n1', observedGeneration: 1 });
  });

  it('does the work once when the same spec arrives ten times', () => {
    for (let i = 0; i < 10; i++) intake.handle(TOPIC, msg('update', content()));
    expect(kicks).toEqual(['default/resnet']);
  });

  it('keeps the newer generation when an older one arrives late', () => {
    intake.handle(TOPIC, msg('update', content({ replicas: 2 }, 5)));
    intake.handle(TOPIC, msg('update', content({ replicas: 1 }, 4)));
    expect(store.specs.get('default', 'resnet')?.spec.replicas).toBe(2);
  });

  describe('refuses bad input with a reason, a Failed status and no change of state', () => {
    const cases: Array<[string, () => string | Buffer, string, boolean]> = [
      ['not JSON', () => '{"header": ', 'BadMessage', true],
      ['binary garbage', () => Buffer.from([0xff, 0x00, 0xfe, 0x12]), 'BadMessage', true],
      ['a JSON array', () => '[1,2,3]', 'BadMessage', true],
      ['oversized', () => msg('update', { ...content(), pad: 'x'.repeat(2 * 1024 * 1024) }), 'MessageTooLarge', true],
      ['wrong types', () => msg('update', content({ replicas: 'three' as never })), 'InvalidSpec', true],
      ['unknown operation', () => msg('explode', content()), 'UnknownOperation', true],
      ['a targetVersion missing from the manifest', () => msg('update', content({ targetVersion: '9' })), 'TargetVersionNotInManifest', true],
      ['a missing sha256sum', () => msg('update', content({ manifest: [{ version: '1', downloadURL: 'http://127.0.0.1/1.tgz' }] })), 'MissingDigest', true],
      ['a non-hex digest', () => msg('update', content({ manifest: [{ version: '1', downloadURL: 'http://127.0.0.1/1.tgz', sha256sum: 'z'.repeat(64) }] })), 'InvalidSpec', true],
      ['a file: URL', () => msg('update', content({ manifest: [{ version: '1', downloadURL: 'file:///etc/passwd', sha256sum: SHA }] })), 'URLNotAllowed', true],
      ['an ftp: URL', () => msg('update', content({ manifest: [{ version: '1', downloadURL: 'ftp://127.0.0.1/1.tgz', sha256sum: SHA }] })), 'URLNotAllowed', true],
      ['metadata that does not match the topic', () => msg('update', { ...content(), metadata: { name: 'other', namespace: 'default', generation: 1 } }), 'BadMessage', true],
      ['a hostile model name', () => msg('update', content({ modelName: '../../etc;rm -rf /' })), 'InvalidSpec', true],
    ];
    for (const [what, payload, reason, answered] of cases) {
      it(what, () => {
        intake.handle(TOPIC, msg('update', content()));
        const before = snapshot();
        sent = [];
        kicks = [];
        const out = intake.handle(TOPIC, payload());
        expect(out).toMatchObject({ accepted: false, reason });
        expect(snapshot()).toBe(before);
        expect(kicks).toEqual([]);
        if (answered) {
          expect(statuses()).toHaveLength(1);
          expect(statuses()[0]).toMatchObject({ phase: 'Failed', reason, name: 'resnet', namespace: 'default' });
        }
      });
    }
  });

  it('logs but does not answer a bad message on a topic that names no model', () => {
    const out = intake.handle('ai/inferencemodel/n1/_sync', '{"oops"');
    expect(out).toMatchObject({ accepted: false, reason: 'BadMessage' });
    expect(sent).toEqual([]);
  });

  it('ignores a spec whose nodeSelector does not match this node', () => {
    const out = intake.handle(TOPIC, msg('update', content({ nodeSelector: { zone: 'b' } })));
    expect(out).toEqual({ accepted: true, changed: [] });
    expect(store.specs.list()).toEqual([]);
  });

  it('trusts the controller\'s placement when the node has no labels configured', () => {
    const unlabelled = new Intake({
      config: parseConfig({ node: { name: 'n1' }, stateDir: dir }),
      store, log: silentLogger(),
      reporter: new Reporter({ config, store, log: silentLogger(), enqueue: () => {} }),
      checkUrl: () => {},
      kick: () => {},
    });
    expect(unlabelled.handle(TOPIC, msg('update', content({ nodeSelector: { zone: 'b' } })))).toEqual({ accepted: true, changed: ['default/resnet'] });
    expect(unlabelled.handle(TOPIC, msg('update', content({ deployToLayer: 'cloud' }, 2)))).toEqual({ accepted: true, changed: ['default/resnet'] });
    expect(store.specs.list()).toEqual([]);
  });

  it('removes a model when its spec stops selecting this node', () => {
    intake.handle(TOPIC, msg('update', content()));
    intake.handle(TOPIC, msg('update', content({ deployToLayer: 'cloud' }, 2)));
    expect(store.specs.list()).toEqual([]);
  });

  it('deletes on delete and replaces the whole set on sync', () => {
    intake.handle(TOPIC, msg('update', content()));
    intake.handle('ai/inferencemodel/n1/default/other', msg('update', { ...content(), metadata: { name: 'other', namespace: 'default', generation: 1 } }));
    expect(store.specs.list().map((s) => s.name)).toEqual(['other', 'resnet']);
    intake.handle('ai/inferencemodel/n1/_sync', msg('sync', { node: 'n1', items: [content()] }));
    expect(store.specs.list().map((s) => s.name)).toEqual(['resnet']);
    intake.handle(TOPIC, msg('delete', { metadata: { name: 'resnet', namespace: 'default' } }));
    expect(store.specs.list()).toEqual([]);
  });

  it('after a sync reports the full state once: unchanged cloud models and local ones too', () => {
    intake.handle(TOPIC, msg('update', content()));
    intake.upsert('local', parseContent({ ...content(), metadata: { name: 'usbfile', namespace: 'default', generation: 1 } }), 'local-1', 'local');
    const before = sent.length;
    intake.handle('ai/inferencemodel/n1/_sync', msg('sync', { node: 'n1', items: [content()], nodeKnown: true }));
    const after = statuses().slice(before).map((s) => s.name).sort();
    expect(after).toEqual(['resnet', 'usbfile']);
  });

  it('lets the cloud replace a local spec, and says so', () => {
    intake.upsert('local', parseContent(content()), 'local-1', 'local');
    intake.handle(TOPIC, msg('update', content({ replicas: 2 }, 1)));
    const s = store.specs.get('default', 'resnet');
    expect(s?.source).toBe('cloud');
    expect(statuses().at(-1)).toMatchObject({ reason: 'CloudOverridesLocal' });
  });

  describe('a sync from a controller that does not know this node (guarantee 10)', () => {
    const SYNC = 'ai/inferencemodel/n1/_sync';
    const other = () => ({ ...content(), metadata: { name: 'other', namespace: 'default', generation: 1 } });
    beforeEach(() => {
      intake.handle(TOPIC, msg('update', content()));
      intake.handle('ai/inferencemodel/n1/default/other', msg('update', other()));
    });

    it('nodeKnown: false removes nothing, and says why', () => {
      const before = snapshot();
      const out = intake.handle(SYNC, msg('sync', { node: 'n1', items: [], nodeKnown: false }));
      expect(out).toMatchObject({ accepted: false, reason: 'UnknownNode' });
      expect(snapshot()).toBe(before);
      expect(store.events.recent(1)[0]).toMatchObject({ kind: 'UnknownNode' });
    });

    it('an empty sync that does not say the node is known (an older controller) removes nothing', () => {
      const before = snapshot();
      expect(intake.handle(SYNC, msg('sync', { node: 'n1', items: [] }))).toMatchObject({ accepted: false, reason: 'UnknownNode' });
      expect(snapshot()).toBe(before);
    });

    it('a controller that knows the node may remove everything, and a non-empty sync removes the rest as before', () => {
      expect(intake.handle(SYNC, msg('sync', { node: 'n1', items: [content()] }))).toMatchObject({ accepted: true });
      expect(store.specs.list().map((s) => s.name)).toEqual(['resnet']);
      expect(intake.handle(SYNC, msg('sync', { node: 'n1', items: [], nodeKnown: true }))).toMatchObject({ accepted: true });
      expect(store.specs.list()).toEqual([]);
    });
  });
});

function parseContent(c: unknown): ModelContent {
  const r = parseMessage(msg('update', c));
  if (!r.ok) throw new Error(r.message);
  return r.message.content as ModelContent;
}
