import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir, rawTar } from '../helpers/archives.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { startPythonHttp, type PythonHttp } from '../helpers/python-http.js';
import { waitFor } from '../helpers/wait.js';

// Inputs nobody here wrote, from outside peers: Python's http.server serves the archives, the
// agent runs as a child process. Each case ends in the right reported state with the daemon alive
// and holding no file it no longer needs.

const NODE = 'edge-1';
let work: string;
let www: string;
let broker: Broker;
let cloud: Cloud;
let http: PythonHttp;
let agent: AgentProcess;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A .tar.gz of incompressible files in www/, and its bytes. */
async function tgz(name: string, files = 40, fileBytes = 256 * 1024): Promise<Buffer> {
  const src = join(work, `src-${name}`);
  const tree: Record<string, Buffer | string> = { 'version.txt': name };
  for (let i = 0; i < files; i++) tree[`weights/part-${i}.bin`] = randomBytes(fileBytes);
  await makeTree(src, tree);
  return readFileSync(await packDir(src, join(www, name), { gzip: true }));
}

const spec = (name: string, file: string, bytes: Buffer, generation = 1): ModelContent => ({
  metadata: { name, namespace: 'default', uid: `uid-${name}`, generation },
  spec: { modelName: name, deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: http.url(file), sha256sum: sha256(bytes) }], targetVersion: '1' },
});

/** Files of the state directory the agent process still has open. */
function openStateFiles(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  const out: string[] = [];
  for (const fd of readdirSync(dir)) {
    let target = '';
    try {
      target = readlinkSync(join(dir, fd));
    } catch {
      continue; // closed meanwhile
    }
    if (target.startsWith(join(work, 'state', 'blobs')) || target.startsWith(join(work, 'state', 'staging'))) out.push(target);
  }
  return out;
}

/** The status `pred` names, failing at once (with the agent's last words) if the agent exits meanwhile. */
async function untilStatus(pred: (s: StatusContent) => boolean, what: string): Promise<StatusContent> {
  let settled = false;
  const exited = agent.exited.then((code) => {
    if (!settled) throw new Error(`the agent exited (${code}) while waiting for ${what}: ${agent.stderr().slice(-2000)}`);
  });
  try {
    return (await Promise.race([cloud.waitStatus(pred, { timeoutMs: 90_000, what }), exited])) as StatusContent;
  } finally {
    settled = true;
  }
}

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'daemon-survives-'));
  www = join(work, 'www');
  mkdirSync(www);
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
  http = await startPythonHttp(www);
});

/** The agent as a child process, once it said hello (subscribed: it takes specs from then on). */
async function startAgent(fetch: Record<string, unknown> = {}): Promise<AgentProcess> {
  const hellos = cloud.hellos.length;
  agent = startAgentProcess(
    { node: { name: NODE }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir: join(work, 'state'), admin: { metricsPort: 0 }, fetch: { backoffBaseMs: 50, backoffMaxMs: 500, ...fetch }, log: { level: 'debug' } },
    ['--no-serve'],
  );
  await waitFor(() => cloud.hellos.length > hellos || agent.child.exitCode !== null, 60_000, 'the agent to say hello');
  expect(agent.child.exitCode).toBeNull();
  return agent;
}

afterEach(async () => {
  await agent?.end();
  await cloud.close();
  await http.stop();
  await broker.close();
  rmSync(work, { recursive: true, force: true });
});

describe('the daemon survives what outside peers send', { timeout: 180_000 }, () => {
  it('a truncated .tar.gz whose digest matches fails CorruptArchive; the daemon lives on, holds no file of it, and installs the next model', async () => {
    await startAgent();
    const whole = await tgz('whole.tgz');
    const truncated = whole.subarray(0, Math.floor(whole.length * 0.6));
    writeFileSync(join(www, 'truncated.tgz'), truncated);
    await cloud.update(NODE, spec('cut', 'truncated.tgz', truncated));
    const failed = await untilStatus((s) => s.name === 'cut' && s.phase === 'Failed', 'the truncated archive refused');
    expect(failed.reason).toBe('CorruptArchive');
    expect(agent.child.exitCode).toBeNull();
    expect(agent.logs.filter((l) => l.level === 'error' || l.level === 'fatal').map((l) => l.msg)).toEqual([]);
    await waitFor(() => openStateFiles(agent.child.pid!).length === 0, 5_000, 'the agent to close the truncated archive').catch(() => {});
    expect(openStateFiles(agent.child.pid!)).toEqual([]);

    await cloud.update(NODE, spec('next', 'whole.tgz', whole));
    await untilStatus((s) => s.name === 'next' && s.phase === 'Installed', 'the next model installed');
    expect(agent.child.exitCode).toBeNull();
    expect(existsSync(join(work, 'state', 'models', 'default', 'next', 'current', 'version.txt'))).toBe(true);
  });

  it('a truncated .tar.gz the unpacker refuses before gzip notices the cut is reported once; nothing escapes to the process', async () => {
    await startAgent();
    // The first entry is refused at its header; the cut at 50% is met by gunzip only after the unpacker stopped reading.
    const whole = gzipSync(rawTar([{ path: '../escape', body: 'x' }, ...Array.from({ length: 8 }, (_, i) => ({ path: `w/${i}.bin`, body: randomBytes(64 * 1024) }))]));
    const cut = whole.subarray(0, Math.floor(whole.length / 2));
    writeFileSync(join(www, 'cut.tgz'), cut);
    await cloud.update(NODE, spec('cut', 'cut.tgz', cut));
    const failed = await untilStatus((s) => s.name === 'cut' && s.phase === 'Failed', 'the cut archive refused');
    expect(failed.reason).toBe('UnsafeArchive');
    // A model after it: everything before it was handled (and any late stream error logged by then).
    const next = await tgz('next.tgz', 2, 1024);
    await cloud.update(NODE, spec('next', 'next.tgz', next));
    await untilStatus((s) => s.name === 'next' && s.phase === 'Installed', 'the next model installed');
    expect(agent.child.exitCode).toBeNull();
    expect(agent.logs.filter((l) => l.msg === 'an error escaped every handler; the daemon keeps running').map((l) => String(l.err).split('\n')[0])).toEqual([]);
  });

  it('an archive refused while it still downloads is closed at once, not when the garbage collector finds its handle', async () => {
    // 2 MB/s: the download goes on for seconds after the unpack refused the first entry.
    await startAgent({ bandwidth: 2 * 1024 * 1024 });
    const hostile = gzipSync(rawTar([{ path: '../escape', body: 'x' }, ...Array.from({ length: 24 }, (_, i) => ({ path: `w/${i}.bin`, body: randomBytes(256 * 1024) }))]));
    writeFileSync(join(www, 'hostile.tgz'), hostile);
    await cloud.update(NODE, spec('hostile', 'hostile.tgz', hostile));
    const failed = await untilStatus((s) => s.name === 'hostile' && s.phase === 'Failed', 'the hostile archive refused');
    expect(failed.reason).toBe('UnsafeArchive');
    expect(agent.child.exitCode).toBeNull();
    // Refused while it downloaded, and those were the verified bytes: not unpacked a second time.
    expect(cloud.statuses.filter((s) => s.name === 'hostile').map((s) => s.phase)).not.toContain('Installing');
    // The install step's own read stream closes a moment after it reports; a leaked handle stays open until a GC.
    await waitFor(() => openStateFiles(agent.child.pid!).length === 0, 5_000, 'the agent to close the refused archive').catch(() => {});
    expect(openStateFiles(agent.child.pid!)).toEqual([]);
  });

  it("hostile MQTT messages from Debian's mosquitto_pub get a reason each; the daemon lives on and its models are untouched", async () => {
    await startAgent();
    const whole = await tgz('whole.tgz', 4, 16 * 1024);
    await cloud.update(NODE, spec('good', 'whole.tgz', whole));
    await untilStatus((s) => s.name === 'good' && s.phase === 'Installed', 'the good model installed');
    const from = cloud.statuses.length;
    const specTopic = (name: string) => `ai/inferencemodel/${NODE}/default/${name}`;
    const envelope = (name: string, content: unknown, operation = 'update') =>
      JSON.stringify({ header: { msg_id: `m-${name}`, parent_msg_id: '', timestamp: Date.now() }, route: { source: 'x', group: 'user', operation, resource: `default/inferencemodel/${name}` }, content });
    const file = (name: string, data: string | Buffer) => (writeFileSync(join(work, name), data), join(work, name));
    const corpus: Array<[topic: string, payload: { m?: string; f?: string; n?: true }]> = [
      [specTopic('good'), { m: 'not json' }],
      [specTopic('good'), { f: file('binary', randomBytes(4096)) }],
      [specTopic('good'), { n: true }],
      [specTopic('good'), { m: 'null' }],
      [specTopic('good'), { m: '[]' }],
      [specTopic('good'), { m: '{"__proto__":{"polluted":true},"header":{}}' }],
      [specTopic('good'), { f: file('deep', '['.repeat(500_000) + ']'.repeat(500_000)) }],
      [specTopic('good'), { f: file('huge', JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) })) }],
      [specTopic('good'), { m: envelope('good', { metadata: { name: 'good', namespace: 'default', generation: 'two' }, spec: { modelName: 7 } }) }],
      [specTopic('good'), { m: envelope('good', { metadata: { name: 'good', namespace: 'default', generation: 9 } }, 'explode') }],
      [specTopic('bad1'), { m: envelope('bad1', { metadata: { name: 'bad1', namespace: 'default', generation: 1 }, spec: { modelName: 'bad1', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: 'file:///etc/shadow', sha256sum: 'a'.repeat(64) }], targetVersion: '1' } }) }],
      [specTopic('bad2'), { m: envelope('bad2', { metadata: { name: 'bad2', namespace: 'default', generation: 1 }, spec: { modelName: 'bad2', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: http.url('x'), sha256sum: 'zz' }], targetVersion: '9' } }) }],
      [`ai/inferencemodel/${NODE}/_sync`, { m: envelope('sync', { node: NODE, items: 'all of them' }, 'sync') }],
      [`ai/inferencemodel/${NODE}/../../etc`, { m: '{}' }],
      [`ai/inferencemodel/${NODE}/default/${'n'.repeat(300)}`, { m: '{}' }],
    ];
    for (const [topic, p] of corpus) {
      const payload = p.n ? ['-n'] : p.f ? ['-f', p.f] : ['-m', p.m!];
      execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-t', topic, ...payload], { stdio: 'pipe' });
    }
    // Each model the corpus names is answered with a reason; the good model keeps its version.
    const bad1 = await untilStatus((s) => s.name === 'bad1' && s.phase === 'Failed', 'bad1 refused');
    expect(bad1.reason).toBe('URLNotAllowed');
    const bad2 = await untilStatus((s) => s.name === 'bad2' && s.phase === 'Failed', 'bad2 refused');
    expect(['InvalidSpec', 'TargetVersionNotInManifest']).toContain(bad2.reason);
    // A marker after the corpus: once it is through, every message before it was handled.
    await cloud.update(NODE, spec('after', 'whole.tgz', whole));
    await untilStatus((s) => s.name === 'after' && s.phase === 'Installed', 'a model sent after the corpus installed');
    expect(agent.child.exitCode).toBeNull();
    const goodRefusals = cloud.statuses.slice(from).filter((s) => s.name === 'good');
    expect(goodRefusals.length).toBeGreaterThan(0);
    for (const s of goodRefusals) expect(s.phase === 'Failed' ? s.reason : 'ok').toMatch(/^(BadMessage|MessageTooLarge|InvalidSpec|UnknownOperation|ok)$/);
    expect(readFileSync(join(work, 'state', 'models', 'default', 'good', 'current', 'version.txt'), 'utf8')).toBe('whole.tgz');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(agent.logs.filter((l) => l.level === 'fatal')).toEqual([]);
  });
});
