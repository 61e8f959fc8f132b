import { execFileSync } from 'node:child_process';
import { randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { createMetrics } from '../../controller/metrics.js';
import type { EventRecorder } from '../../controller/kube/events.js';
import { NodeSends } from '../../controller/sends.js';
import { Sequencer } from '../../controller/sequence.js';
import { envelopeSigner } from '../../controller/signer.js';
import { makeEnvelope, resourcePath, specTopic, type HelloContent, type ModelContent } from '../../shared/index.js';
import { generateSigningKey, privateKeyFromPem } from '../../shared/signing.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { inferenceModel, runCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// Signed specs end to end (issue 14): a real mosquitto, the agent as a child process, and the
// controller's own message path (controller/sends.ts NodeSends.message with its signer) making
// every message. Each refusal has its reason in a status and changes nothing.

const NODE = 'edge-1';
const PREFIX = 'ai/inferencemodel';

let work: string;
let broker: Broker;
let cloud: Cloud;
const servers: ChaosServer[] = [];
const agents: AgentProcess[] = [];
const hellos: HelloContent[] = [];
const keys: Record<'a' | 'b' | 'stranger', { file: string; key: KeyObject; keyId: string }> = {} as never;
const archives: Record<string, { url: string; sha256: string }> = {};

/** The controller's message builder, signing with `key` (none: unsigned, as an old controller). */
function controller(key?: KeyObject, sequencer = new Sequencer()) {
  const sends = new NodeSends({
    topicPrefix: PREFIX,
    source: 'modeld-controller',
    transport: { name: 'mqtt', start: async () => {}, stop: async () => {}, publish: async () => {}, connected: () => true } as never,
    sequencer,
    signer: envelopeSigner(key),
    log: silentLogger() as never,
    metrics: createMetrics(),
    events: {} as EventRecorder,
    nodeKnown: () => true,
    isAgentNode: () => true,
    backingOff: () => false,
    onReachability: () => {},
  });
  return {
    sends,
    update: (node: string, content: ModelContent) => sends.message({ op: 'update', node, key: `${content.metadata.namespace}/${content.metadata.name}`, content }),
    sync: (node: string, items: ModelContent[], nonce?: string) => {
      if (nonce) sends.helloNonces.set(node, nonce);
      return sends.message({ op: 'sync', node, items: new Map(items.map((i) => [`${i.metadata.namespace}/${i.metadata.name}`, i])) });
    },
  };
}

const publish = (m: { topic: string; payload: string }) => cloud.client.publishAsync(m.topic, m.payload, { qos: 1 });

const content = (generation: number, targetVersion: string, name = 'resnet'): ModelContent => ({
  metadata: { name, namespace: 'default', uid: `uid-${name}`, generation },
  spec: {
    modelName: name,
    deployToLayer: 'edge',
    manifest: ['1', '2', '3'].map((v) => ({ version: v, downloadURL: archives[v].url, sha256sum: archives[v].sha256 })),
    targetVersion,
  },
});

async function agent(stateDir: string, security: Record<string, unknown> | undefined): Promise<AgentProcess> {
  const before = hellos.length;
  const a = startAgentProcess(
    {
      node: { name: NODE },
      broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
      stateDir,
      fetch: { progressIntervalMs: 100, backoffBaseMs: 50, backoffMaxMs: 500 },
      ...(security ? { security } : {}),
      log: { level: 'debug' },
    },
    ['--no-serve'],
  );
  agents.push(a);
  await waitFor(() => hellos.length > before, WAIT_MS, 'the agent to say hello');
  return a;
}

const currentVersion = (stateDir: string, name = 'resnet') => {
  const link = join(stateDir, 'models', 'default', name, 'current');
  return existsSync(link) ? readlinkSync(link).replace(/^versions\//, '').split('@')[0] : undefined;
};

/** The desired spec the agent holds (read-only look at its database). */
function storedGeneration(stateDir: string, name = 'resnet'): number | undefined {
  const db = new Database(join(stateDir, 'state.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT generation FROM specs WHERE namespace = ? AND name = ?').get('default', name) as { generation: number } | undefined)?.generation;
  } finally {
    db.close();
  }
}

const refusedWith = (reason: string, from: number) => cloud.waitStatus((s) => s.name === 'resnet' && s.reason === reason, { from, what: `a status refusing with ${reason}` });
const installed = (generation: number, version: string, from = 0) =>
  cloud.waitStatus((s) => s.name === 'resnet' && s.observedGeneration === generation && s.phase === 'Installed' && s.servingVersion === version, { from, what: `resnet ${version} installed at generation ${generation}` });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'e2e-signing-'));
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url, undefined, PREFIX, { ack: false });
  await cloud.client.subscribeAsync(`default/ai/inferencemodel-status/${NODE}`, { qos: 1 });
  cloud.client.on('message', (_t, payload) => {
    try {
      const m = JSON.parse(payload.toString());
      if (m.route?.operation === 'hello') hellos.push(m.content);
    } catch {
      // not ours
    }
  });
  for (const k of ['a', 'b', 'stranger'] as const) {
    const pair = generateSigningKey();
    const file = join(work, `${k}.pub.pem`);
    writeFileSync(file, pair.publicPem);
    keys[k] = { file, key: privateKeyFromPem(pair.privatePem), keyId: pair.keyId };
  }
  for (const v of ['1', '2', '3']) {
    const src = join(work, `src-${v}`);
    await makeTree(src, { 'version.txt': v, 'weights.bin': randomBytes(256) });
    const body = readFileSync(await packDir(src, join(work, `v${v}.tar.gz`), { gzip: true }));
    const server = await startChaosServer({ body });
    servers.push(server);
    archives[v] = { url: server.urlFor(`/${v}.tar.gz`), sha256: server.sha256 };
  }
});

afterAll(async () => {
  for (const a of agents) await a.end();
  await cloud?.close();
  for (const s of servers) await s.stop();
  await broker?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('signed specs (security.trustedKeys)', () => {
  const state = () => join(work, 'node-signed', 'state');
  const ctl = () => controller(keys.a.key);

  it('a signed spec is installed; the same message again (a QoS 1 duplicate) is answered, not refused', async () => {
    await agent(state(), { trustedKeys: [keys.a.file] });
    const m = ctl().update(NODE, content(1, '1'));
    await publish(m);
    await installed(1, '1');
    expect(currentVersion(state())).toBe('1');
    const from = cloud.statuses.length;
    await publish(m);
    await cloud.waitStatus((s) => s.name === 'resnet', { from, what: 'the duplicate answered' });
    expect(cloud.statuses.slice(from).filter((s) => s.reason === 'Replayed')).toEqual([]);
    expect(cloud.statuses.at(-1)).toMatchObject({ phase: 'Installed', observedGeneration: 1 });
  });

  it('unsigned, unknown key, altered by one digest byte, or signed for another node: refused with a reason, nothing changes', async () => {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['Unsigned', () => publish(controller().update(NODE, content(2, '2')))],
      ['UnknownKey', () => publish(controller(keys.stranger.key).update(NODE, content(2, '2')))],
      [
        'BadSignature',
        async () => {
          // One hex digit of the digest changed in the signed bytes, published by mosquitto_pub.
          const m = ctl().update(NODE, content(2, '2'));
          const sha = archives['2'].sha256;
          const altered = m.payload.replace(sha, sha.slice(0, 10) + (sha[10] === '0' ? '1' : '0') + sha.slice(11));
          expect(altered).not.toBe(m.payload);
          const u = new URL(broker.url);
          execFileSync('mosquitto_pub', ['-h', u.hostname, '-p', u.port, '-q', '1', '-t', m.topic, '-m', altered]);
        },
      ],
      [
        'BadSignature',
        async () => {
          // Signed for edge-2, published on edge-1's topic.
          const m = ctl().update('edge-2', content(2, '2'));
          await publish({ topic: specTopic(PREFIX, NODE, 'default', 'resnet'), payload: m.payload });
        },
      ],
    ];
    for (const [reason, send] of cases) {
      const from = cloud.statuses.length;
      await send();
      const s = await refusedWith(reason, from);
      expect(s.servingVersion).toBe('1');
      expect(storedGeneration(state())).toBe(1);
      expect(currentVersion(state())).toBe('1');
    }
    const a = agents.at(-1)!;
    expect(a.logs.filter((l) => l.level === 'warn' && /message refused/.test(String(l.msg))).map((l) => l.reason)).toEqual(expect.arrayContaining(['Unsigned', 'UnknownKey', 'BadSignature']));
  });

  it('a replay of an older generation is refused, after an agent restart too; a replayed sync is refused; a sync echoing the hello nonce passes once', async () => {
    const c = ctl();
    const gen1 = c.update(NODE, content(1, '1')); // recorded "old" message, same generation as what the node has
    const from = cloud.statuses.length;
    await publish(c.update(NODE, content(2, '2')));
    await installed(2, '2', from);
    // A sync delivered and accepted now, recorded by an attacker for later.
    const oldSync = c.sync(NODE, [content(2, '2')], hellos.at(-1)!.nonce);
    let mark = cloud.statuses.length;
    await publish(oldSync);
    await cloud.waitStatus((s) => s.name === 'resnet' && s.observedGeneration === 2, { from: mark, what: 'the sync answered' });
    // Something newer after it (a rollout step of the same generation): the sync is no longer the
    // last accepted message, so it is not a mere duplicate any more.
    mark = cloud.statuses.length;
    await publish(c.update(NODE, content(2, '2')));
    await cloud.waitStatus((s) => s.name === 'resnet' && s.observedGeneration === 2, { from: mark, what: 'the same spec again answered' });

    // Replay of generation 1 (a genuine message, validly signed) now: refused.
    mark = cloud.statuses.length;
    await publish(gen1);
    await refusedWith('Replayed', mark);
    expect(storedGeneration(state())).toBe(2);

    // After a restart: the newest accepted is durable, and the hello says the highest sequence.
    await agents.at(-1)!.kill('SIGTERM');
    await agent(state(), { trustedKeys: [keys.a.file] });
    const hello = hellos.at(-1)!;
    expect(hello.nonce).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(hello.nonce).not.toBe(hellos.at(-2)!.nonce);
    expect(hello.lastSequence).toBeGreaterThan(0);
    mark = cloud.statuses.length;
    await publish(gen1);
    await refusedWith('Replayed', mark);
    expect(storedGeneration(state())).toBe(2);
    expect(currentVersion(state())).toBe('2');

    // A sync made before this connect (it echoes the old nonce), replayed: refused (log only: no resource).
    const a = agents.at(-1)!;
    const warned = () => a.logs.filter((l) => l.reason === 'Replayed' && /_sync/.test(String(l.topic))).length;
    await publish({ topic: `${PREFIX}/${NODE}/_sync`, payload: oldSync.payload });
    await waitFor(() => warned() === 1, WAIT_MS, 'the replayed sync refused');

    // A controller whose sequences lag (a new leader with a slow clock) is fresh by the nonce, once.
    const lagging = controller(keys.a.key, new Sequencer(() => 1));
    const fresh = lagging.sync(NODE, [content(2, '2')], hello.nonce);
    mark = cloud.statuses.length;
    await publish(fresh);
    await cloud.waitStatus((s) => s.name === 'resnet' && s.phase === 'Installed' && s.reason === undefined, { from: mark, what: 'the sync answered with the full state' });
    await publish(lagging.sync(NODE, [content(2, '2')], hello.nonce));
    await waitFor(() => warned() === 2, WAIT_MS, 'the second sync on the same nonce refused');
  });

  it('rotation: two trusted keys at once; then the old one is dropped', async () => {
    await agents.at(-1)!.kill('SIGTERM');
    await agent(state(), { trustedKeys: [keys.a.file, keys.b.file] });
    let from = cloud.statuses.length;
    await publish(controller(keys.a.key).update(NODE, content(3, '3')));
    await installed(3, '3', from);
    from = cloud.statuses.length;
    await publish(controller(keys.b.key).update(NODE, content(4, '1')));
    await installed(4, '1', from);

    await agents.at(-1)!.kill('SIGTERM');
    await agent(state(), { trustedKeys: [keys.b.file] });
    from = cloud.statuses.length;
    await publish(controller(keys.a.key).update(NODE, content(5, '2')));
    await refusedWith('UnknownKey', from);
    expect(storedGeneration(state())).toBe(4);
  });
});

describe('local specs and no keys', () => {
  it('modeld apply is refused with keys unless security.allowLocalApply; doctor lists the keys', async () => {
    const yaml = writeYaml(join(work, 'local.yaml'), inferenceModel('lin', [{ version: '1', sha256: archives['1'].sha256 }]));
    const base = { node: { name: NODE }, broker: { url: 'mqtt://127.0.0.1:1', reconnectMs: 60_000 } };
    const refused = writeConfig({ ...base, stateDir: join(work, 'local-refused', 'state'), security: { trustedKeys: [keys.a.file] } });
    const r = await runCli(refused, ['apply', '-f', yaml]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/LocalApplyNotAllowed/);
    const doctor = await runCli(refused, ['doctor', '--json']);
    const signing = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === 'signing');
    expect(signing).toMatchObject({ status: 'ok' });
    expect(signing.message).toContain(`${keys.a.file} (keyId ${keys.a.keyId})`);

    const allowed = writeConfig({ ...base, stateDir: join(work, 'local-allowed', 'state'), security: { trustedKeys: [keys.a.file], allowLocalApply: true } });
    expect((await runCli(allowed, ['apply', '-f', yaml])).code).toBe(0);
  });

  it('with no keys configured: unsigned specs are served as today, and doctor warns', async () => {
    const stateDir = join(work, 'node-open', 'state');
    await agents.at(-1)?.kill('SIGTERM');
    await agent(stateDir, undefined);
    const from = cloud.statuses.length;
    await cloud.client.publishAsync(specTopic(PREFIX, NODE, 'default', 'resnet'), JSON.stringify(makeEnvelope('update', content(1, '1'), { source: 'modeld-controller', resource: resourcePath('default', 'resnet') })), { qos: 1 });
    await installed(1, '1', from);
    const cfg = writeConfig({ node: { name: NODE }, broker: { url: 'mqtt://127.0.0.1:1' }, stateDir: join(work, 'doctor-open', 'state') });
    const signing = JSON.parse((await runCli(cfg, ['doctor', '--json'])).stdout).checks.find((c: { name: string }) => c.name === 'signing');
    expect(signing).toMatchObject({ status: 'warn' });
    expect(signing.message).toMatch(/trustedKeys is empty/);
  });
});
