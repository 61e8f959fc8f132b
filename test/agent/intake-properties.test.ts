import fc from 'fast-check';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DNS_LABEL,
  InferenceModelSpecSchema,
  makeEnvelope,
  parseMessage,
  parseTopic,
  resourcePath,
  specProblems,
  statusTopic,
  type ModelContent,
} from '../../shared/index.js';
import { parseConfig } from '../../agent/config/load.js';
import type { Config } from '../../agent/config/schema.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { checkUrl } from '../../agent/fetch/url-policy.js';
import { silentLogger } from '../../agent/log.js';
import { Intake, type IntakeOutcome } from '../../agent/reconcile/intake.js';
import { Reporter } from '../../agent/reconcile/report.js';
import { openStore, type Store } from '../../agent/store/index.js';

// Intake against a real store, for every input (fast-check, seeded): random JSON, random bytes and
// near-valid envelopes (a valid update, delete or sync with fields removed, wrong types, huge or
// odd strings, extra and `__proto__` keys, deep nesting, sizes around the limit) on right and
// wrong topics. What must hold for each message:
//   - handle() returns an outcome, never throws, and never reaches its catch-all ('Internal');
//   - a refused message changes no state (specs and models tables) and starts no reconcile;
//   - a refused message on a topic that names a model is answered by exactly one Failed status
//     for that model, with a reason and a message; one that names none is answered by nothing;
//   - every status sent is a valid status message (the controller would accept it);
//   - after an accepted message every stored spec re-validates against the schema, unchanged.
// Failures found are kept as example tests at the end, with their seeds.

/** Another seed explores further: INTAKE_PROPERTY_SEED=7 npx vitest run test/agent/intake-properties.test.ts */
const SEED = Number(process.env.INTAKE_PROPERTY_SEED ?? 42);
const RUNS = 3000;
const NODE = 'n1';
const PREFIX = 'ai/inferencemodel';
/** A small limit, so that messages around it are cheap to make. */
const LIMIT = 16 * 1024;
const SHA = 'c'.repeat(64);

let dir: string;
let store: Store;
let config: Config;
let intake: Intake;
const sent: Array<{ topic: string; payload: string }> = [];
const kicks: string[] = [];
const outcomes = new Map<string, number>();

beforeAll(() => {
  // The store is real; only its durability is not what is tested here (tmpfs when there is one, no fsync).
  dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'intake-prop-'));
  store = openStore(join(dir, 'state.db'));
  store.db.pragma('synchronous = OFF');
  config = parseConfig({ node: { name: NODE, labels: { zone: 'a' } }, stateDir: dir, limits: { messageBytes: LIMIT } });
  const policy = fetchPolicyFromConfig(config);
  const reporter = new Reporter({ config, store, log: silentLogger(), enqueue: (topic, payload) => sent.push({ topic, payload }) });
  intake = new Intake({
    config,
    store,
    log: silentLogger(),
    reporter,
    checkUrl: (url) => void checkUrl(url, policy),
    kick: (ns, name) => kicks.push(`${ns}/${name}`),
  });
});

afterAll(() => {
  if (process.env.INTAKE_PROPERTY_STATS) console.log(Object.fromEntries([...outcomes].sort(([, a], [, b]) => b - a)));
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

// ---- valid messages, the starting point of every mutation ----

const spec = (name: string) => ({
  modelName: name,
  deployToLayer: 'edge',
  frameworkType: 'onnx',
  nodeSelector: { zone: 'a' },
  manifest: [
    { version: '1', downloadURL: 'http://127.0.0.1:9/1.tgz', sha256sum: SHA },
    { version: '2', downloadURL: 'https://models.example/2.tgz', sha256sum: SHA.toUpperCase() },
  ],
  targetVersion: '2',
  replicas: 1,
});
const content = (name: string, generation: number) => ({ metadata: { name, namespace: 'default', uid: `u-${name}`, generation }, spec: spec(name) });
const envelope = (operation: string, c: unknown, name: string, msgId: string) =>
  makeEnvelope(operation as 'update', c as ModelContent, { source: 'modeld-controller', resource: resourcePath('default', name), msgId, now: 1_764_000_000_000 });
const specTopic = (ns: string, name: string) => `${PREFIX}/${NODE}/${ns}/${name}`;
const SYNC_TOPIC = `${PREFIX}/${NODE}/_sync`;

/** Every run starts from the same state: two models from the cloud and one applied locally. */
function reset(): void {
  store.db.exec('DELETE FROM specs; DELETE FROM models; DELETE FROM versions; DELETE FROM events; DELETE FROM outbox;');
  for (const name of ['resnet', 'other']) {
    const out = intake.handle(specTopic('default', name), JSON.stringify(envelope('update', content(name, 2), name, `base-${name}`)));
    if (!out.accepted) throw new Error(`base state refused: ${out.message}`);
  }
  const local = parseMessage(JSON.stringify(envelope('update', content('loc', 1), 'loc', 'base-loc')));
  if (!local.ok) throw new Error(local.message);
  intake.upsert('local', local.message.content as ModelContent, 'base-loc', 'local');
  sent.length = 0;
  kicks.length = 0;
}

const snapshot = () =>
  JSON.stringify({
    specs: store.specs.list().map((s) => ({ ...s, updatedAt: 0 })),
    models: store.models.list().map((m) => ({ ...m, updatedAt: 0 })),
  });

/** The model a topic names for this node, if it names one the agent can answer. */
function namedModel(topic: string): { namespace: string; name: string } | undefined {
  const where = parseTopic(PREFIX, topic);
  if (where?.kind !== 'spec' || where.node !== NODE) return undefined;
  return DNS_LABEL.test(where.namespace) && DNS_LABEL.test(where.name) ? { namespace: where.namespace, name: where.name } : undefined;
}

/** Feeds one message from the base state and checks every property; returns the outcome. */
function check(topic: string, payload: string | Buffer): IntakeOutcome {
  reset();
  const before = snapshot();
  let out: IntakeOutcome | undefined;
  expect(() => (out = intake.handle(topic, payload))).not.toThrow();
  expect(out).toBeDefined();
  const outcome = out!;
  if (!outcome.accepted) expect(outcome.reason, outcome.message).not.toBe('Internal');
  if (process.env.INTAKE_PROPERTY_STATS) outcomes.set(outcome.accepted ? 'accepted' : outcome.reason, (outcomes.get(outcome.accepted ? 'accepted' : outcome.reason) ?? 0) + 1);

  for (const s of sent) {
    expect(s.topic).toBe(statusTopic(config.topics.status, NODE));
    const parsed = parseMessage(s.payload);
    expect(parsed.ok ? parsed.message.route.operation : parsed.message).toBe('status');
  }
  const statuses = sent.map((s) => JSON.parse(s.payload).content as { namespace: string; name: string; phase: string; reason?: string; message?: string });

  if (!outcome.accepted) {
    expect(snapshot()).toBe(before);
    expect(kicks).toEqual([]);
    const named = namedModel(topic);
    if (named) {
      expect(statuses).toHaveLength(1);
      expect(statuses[0]).toMatchObject({ ...named, phase: 'Failed' });
      expect(statuses[0].reason).toBeTruthy();
      expect(statuses[0].message).toBeTruthy();
    } else {
      expect(statuses).toEqual([]);
    }
  } else {
    for (const s of store.specs.list()) {
      expect(DNS_LABEL.test(s.namespace) && DNS_LABEL.test(s.name)).toBe(true);
      const again = InferenceModelSpecSchema.safeParse(s.spec);
      expect(again.success, JSON.stringify(again.error?.issues)).toBe(true);
      expect(again.data).toEqual(s.spec);
      expect(specProblems(s.spec, { requireDigest: !config.allowUnverified })).toEqual([]);
    }
  }
  return outcome;
}

// ---- arbitraries ----

/** Any UTF-16 code unit, lone surrogates included. */
const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
const oddString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: anyCodeUnit, maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom('', ' ', '\u0000', '../../etc/passwd', 'a/b', '#', '+', '%2F', 'ÄÖÜ', '\u202e', '😀', 'null', 'true', '-1'),
);
const oddNumber = fc.constantFrom(-1, -0, 0.5, 1e308, -1e308, 2 ** 53 + 2, 2 ** 31, 4294967296, 65, 257);
const oddKey = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', ''), oddString);

const topicFor = (op: string, name: string) => (op === 'sync' ? SYNC_TOPIC : specTopic('default', name));
const otherTopic = fc.oneof(
  fc.constantFrom(
    SYNC_TOPIC,
    specTopic('default', 'resnet'),
    specTopic('default', 'other'),
    specTopic('default', 'loc'),
    specTopic('default', 'new'),
    specTopic('kube-system', 'resnet'),
    specTopic('Default', 'resnet'),
    specTopic('default', 'Res_Net'),
    specTopic('default', 'a'.repeat(64)),
    specTopic('ns', 'ünï'),
    `${PREFIX}/${NODE}/_agent`,
    `${PREFIX}/${NODE}/_other`,
    `${PREFIX}/${NODE}/default/resnet/extra`,
    `${PREFIX}/${NODE}//resnet`,
    `${PREFIX}/${NODE}/default/`,
    `${PREFIX}/n2/default/resnet`,
    `${PREFIX}/n2/_sync`,
    `other/${NODE}/default/resnet`,
    `${PREFIX}`,
    `${PREFIX}/`,
    '',
  ),
  fc.tuple(oddString, oddString).map(([ns, name]) => specTopic(ns, name)),
  oddString.map((rest) => `${PREFIX}/${rest}`),
  oddString,
);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The paths of every value inside `v` (not the root). */
function pathsOf(v: Json, at: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(v)) return v.flatMap((x, i) => [[...at, i], ...pathsOf(x, [...at, i])]);
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [[...at, k], ...pathsOf(x, [...at, k])]);
  return [];
}

type Mutation =
  | { kind: 'remove'; pick: number }
  | { kind: 'replace'; pick: number; value: Json }
  | { kind: 'extra'; pick: number; key: string; value: Json }
  | { kind: 'deep'; pick: number; depth: number; open: '[' | '{"a":' }
  | { kind: 'huge'; pick: number; length: number; char: string };

const DEEP = '\u0000deep\u0000';
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('replace' as const),
    pick: fc.nat(),
    value: fc.oneof<fc.Arbitrary<Json>[]>(fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>, oddString, oddNumber, fc.constant(null), fc.constant<Json>([]), fc.constant<Json>({})),
  }),
  fc.record({ kind: fc.constant('extra' as const), pick: fc.nat(), key: oddKey, value: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json> }),
  fc.record({ kind: fc.constant('deep' as const), pick: fc.nat(), depth: fc.integer({ min: 1, max: 5000 }), open: fc.constantFrom('[' as const, '{"a":' as const) }),
  fc.record({ kind: fc.constant('huge' as const), pick: fc.nat(), length: fc.integer({ min: 64, max: 2 * LIMIT }), char: fc.constantFrom('x', 'é', '😀', '\u0000') }),
);

/** A fresh copy (own "__proto__" keys stay own keys, as JSON.parse makes them). */
const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** Applies mutations to a copy of `root`; deep nesting is spliced into the text. */
function mutate(root: Json, mutations: Mutation[]): string {
  const doc = copy(root);
  const deep: Mutation[] = [];
  for (const m of mutations) {
    const paths = pathsOf(doc);
    if (!paths.length) break;
    const path = paths[m.pick % paths.length];
    const parent = path.slice(0, -1).reduce<any>((o, k) => o[k], doc);
    const key = path[path.length - 1];
    switch (m.kind) {
      case 'remove':
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key];
        break;
      case 'replace':
        parent[key] = copy(m.value);
        break;
      case 'extra': {
        const target = parent[key] && typeof parent[key] === 'object' && !Array.isArray(parent[key]) ? parent[key] : parent;
        if (Array.isArray(target)) target.push(copy(m.value));
        // Own and enumerable, as JSON.parse makes it, even for "__proto__".
        else Object.defineProperty(target, m.key, { value: copy(m.value), enumerable: true, writable: true, configurable: true });
        break;
      }
      case 'deep':
        parent[key] = DEEP;
        deep.push(m);
        break;
      case 'huge':
        parent[key] = m.char.repeat(Math.ceil(m.length / m.char.length));
        break;
    }
  }
  let text = JSON.stringify(doc);
  for (const m of deep) {
    if (m.kind !== 'deep') continue;
    const close = m.open === '[' ? ']' : '}';
    text = text.replace(JSON.stringify(DEEP), `${m.open.repeat(m.depth)}1${close.repeat(m.depth)}`);
  }
  return text;
}

const operation = fc.oneof(
  { arbitrary: fc.constantFrom('update', 'insert', 'delete', 'sync'), weight: 8 },
  { arbitrary: fc.constantFrom('status', 'hello', 'Update', 'explode', '', 'constructor', '__proto__', 'toString'), weight: 1 },
);
const baseMessage = fc
  .record({
    op: operation,
    name: fc.constantFrom('resnet', 'other', 'loc', 'new'),
    generation: fc.integer({ min: 0, max: 4 }),
    msgId: fc.oneof(fc.uuid(), fc.constant('m1')),
    nodeKnown: fc.constantFrom(true, false, undefined),
    items: fc.subarray(['resnet', 'other', 'loc', 'new']),
  })
  .map(({ op, name, generation, msgId, nodeKnown, items }) => {
    const c =
      op === 'delete'
        ? { metadata: { name, namespace: 'default' } }
        : op === 'sync'
          ? { node: NODE, items: items.map((n) => content(n, generation)), ...(nodeKnown === undefined ? {} : { nodeKnown }) }
          : content(name, generation);
    return { op, name, doc: envelope(op, c, name, msgId) as unknown as Json };
  });

const asPayload = (text: string, buffer: boolean) => (buffer ? Buffer.from(text) : text);

// ---- properties ----

describe(`intake, for every input (fast-check seed ${SEED})`, () => {
  it(`random JSON, strings and bytes on any topic: an outcome, never a throw, no state change (${RUNS} runs)`, () => {
    const payload = fc.oneof(
      fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v) ?? 'null'),
      fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' }).map((v) => JSON.stringify(v) ?? 'null'),
      oddString,
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    );
    fc.assert(
      fc.property(otherTopic, payload, (topic, p) => {
        check(topic, p);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it(`near-valid envelopes (fields removed, wrong types, odd strings, extra and __proto__ keys, deep nesting, huge values) (${RUNS} runs)`, () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        baseMessage,
        fc.array(mutation, { minLength: 0, maxLength: 4 }),
        fc.oneof({ arbitrary: fc.constant(undefined), weight: 5 }, { arbitrary: otherTopic, weight: 1 }),
        fc.boolean(),
        (base, mutations, wrongTopic, buffer) => {
          const out = check(wrongTopic ?? topicFor(base.op, base.name), asPayload(mutate(base.doc, mutations), buffer));
          if (out.accepted) accepted++;
          else refused++;
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
    // Both sides were exercised.
    expect(accepted).toBeGreaterThan(RUNS / 20);
    expect(refused).toBeGreaterThan(RUNS / 20);
  });

  it(`valid envelopes with odd but typed values (versions, URLs, digests, selectors, layers, image) (${RUNS} runs)`, () => {
    const entry = fc.record(
      {
        version: fc.oneof(fc.constantFrom('1', '2', '10', 'v1', 'a.b_c-d', '0'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/)),
        downloadURL: fc.oneof(
          fc.constantFrom('http://127.0.0.1:9/1.tgz', 'https://h/2', 'file:///etc/passwd', 'ftp://h/x', 'http://', 'not a url', 'http://user:pw@h/x', 'javascript:alert(1)'),
          fc.webUrl(),
        ),
        sha256sum: fc.oneof(fc.constant(SHA), fc.stringMatching(/^[0-9a-fA-F]{64}$/)),
      },
      { requiredKeys: ['version', 'downloadURL'] },
    );
    const randomSpec = fc.record(
      {
        modelName: fc.oneof(fc.constant('resnet'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/)),
        deployToLayer: fc.constantFrom('edge', 'cloud'),
        frameworkType: fc.constantFrom('onnx', 'triton', ''),
        fraemworkType: fc.constantFrom('onnx', 'tf'),
        nodeSelector: fc.oneof(fc.constant({ zone: 'a' }), fc.dictionary(fc.constantFrom('zone', 'arch', '__proto__', 'constructor'), fc.constantFrom('a', 'b', ''))),
        image: fc.constantFrom('', 'registry/resnet:1'),
        manifest: fc.array(entry, { maxLength: 4 }),
        targetVersion: fc.constantFrom('', '1', '2', '10', 'v1', 'nope'),
        replicas: fc.integer({ min: 0, max: 64 }),
      },
      { requiredKeys: ['modelName', 'deployToLayer'] },
    );
    const msg = fc.record({
      op: fc.constantFrom('update', 'insert', 'sync'),
      name: fc.constantFrom('resnet', 'other', 'loc', 'new'),
      generation: fc.integer({ min: 0, max: 4 }),
      uid: fc.constantFrom(undefined, 'u-resnet', 'u-other', 'someone-else'),
      spec: randomSpec,
      nodeKnown: fc.constantFrom(true, false, undefined),
      buffer: fc.boolean(),
    });
    fc.assert(
      fc.property(msg, ({ op, name, generation, uid, spec: s, nodeKnown, buffer }) => {
        const c = { metadata: { name, namespace: 'default', ...(uid ? { uid } : {}), generation }, spec: s };
        const body = op === 'sync' ? { node: NODE, items: [c], ...(nodeKnown === undefined ? {} : { nodeKnown }) } : c;
        check(topicFor(op, name), asPayload(JSON.stringify(envelope(op, body, name, 'm1')), buffer));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it(`messages around the size limit: refused above it with MessageTooLarge, judged on content at or below it (${RUNS / 3} runs)`, () => {
    fc.assert(
      fc.property(baseMessage, fc.integer({ min: -8, max: 8 }), fc.constantFrom('x', 'é', '😀'), fc.boolean(), (base, delta, char, buffer) => {
        // Pad an extra field so that the message is LIMIT + delta bytes.
        const doc = copy(base.doc) as { [k: string]: Json };
        doc.pad = '';
        const bare = Buffer.byteLength(JSON.stringify(doc));
        const want = LIMIT + delta - bare;
        const unit = Buffer.byteLength(char);
        doc.pad = char.repeat(Math.max(0, Math.floor(want / unit))) + 'x'.repeat(Math.max(0, want % unit));
        const text = JSON.stringify(doc);
        const size = Buffer.byteLength(text);
        expect(size).toBe(LIMIT + delta);
        const out = check(topicFor(base.op, base.name), asPayload(text, buffer));
        if (size > LIMIT) expect(out).toMatchObject({ accepted: false, reason: 'MessageTooLarge' });
        else expect(out.accepted ? 'accepted' : out.reason).not.toBe('MessageTooLarge');
      }),
      { seed: SEED, numRuns: RUNS / 3 },
    );
  });
});

describe('found by these properties, kept as examples', () => {
  it('a topic whose namespace or name is no DNS label names no model: refused, logged, not answered (seed 42, path "2:1")', () => {
    // Was answered by a Failed status naming namespace "\0" — a status no controller accepts.
    for (const topic of [`${PREFIX}/${NODE}/\u0000/%2F`, specTopic('Default', 'resnet'), `${PREFIX}/${NODE}/+/null`]) {
      const update = JSON.stringify(envelope('update', { ...content('resnet', 3), metadata: { name: 'resnet', namespace: 'default', generation: 3 } }, 'resnet', 'm1'));
      for (const payload of ['', update]) {
        expect(check(topic, payload)).toMatchObject({ accepted: false, reason: 'BadMessage' });
        expect(sent).toEqual([]);
      }
    }
  });

  it('a sync refused because the node is unknown applies none of its items (seed 42, size-limit property)', () => {
    // Was: items upserted and reconciled (a new model downloaded), while the outcome said "not applied".
    const invalid = { ...content('resnet', 3), spec: { modelName: 'resnet', deployToLayer: 'edge' } };
    const sync = envelope('sync', { node: NODE, items: [content('new', 1), invalid], nodeKnown: false }, 'resnet', 'm1');
    expect(check(SYNC_TOPIC, JSON.stringify(sync))).toMatchObject({ accepted: false, reason: 'UnknownNode' });
    expect(store.specs.get('default', 'new')).toBeUndefined();
    expect(kicks).toEqual([]);
    expect(sent).toEqual([]);
  });

  it('a refused message with a negative generation is answered with a valid status (seed 42, path "193:0:0:0:0:0:0:0:0:1:4:2:1:4:3:5:8:4:2:34:34:34")', () => {
    // Was answered with observedGeneration -1: a status no controller accepts.
    const bad = { metadata: { name: 'resnet', namespace: 'default', generation: -1 }, spec: { modelName: 'resnet' } };
    expect(check(specTopic('default', 'resnet'), JSON.stringify(envelope('update', bad, 'resnet', 'm1')))).toMatchObject({ accepted: false, reason: 'InvalidSpec' });
    expect(JSON.parse(sent[0].payload).content).toMatchObject({ phase: 'Failed', reason: 'InvalidSpec', observedGeneration: 2 });
  });
});
