import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import { statePaths } from '../../agent/paths.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { faultObject, faultSeed, startFaultServer, type Fault, type FaultServer } from '../helpers/fault-server.js';
import { startPythonHttp, type PythonHttp } from '../helpers/python-http.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

// Fault injection end to end: the agent as a real child process over a real mosquitto,
// downloading from a server that misbehaves on the wire in one precise way per test. Each case
// ends in the right reported state, and the daemon is alive afterwards (a second model is
// delivered). Offsets come from a seeded PRNG: replay a failure with FAULT_SEED=<seed>.

const SEED = faultSeed();
const NODE = 'edge-1';

let work: string;
let broker: Broker;
let cloud: Cloud;
let agents: AgentProcess[] = [];
let servers: FaultServer[] = [];
let probes = 0;
let pythons: PythonHttp[] = [];

/** Python's http.server (HTTP/1.0) on `dir`, stopped after the test. */
async function python(dir: string): Promise<PythonHttp> {
  const p = await startPythonHttp(dir);
  pythons.push(p);
  return p;
}

const stateDir = () => join(work, 'state');
const paths = () => statePaths(stateDir());

/** Starts the agent (delivery only) and waits for its hello. */
async function agent(fetch: Record<string, unknown> = {}): Promise<AgentProcess> {
  const hellos = cloud.hellos.length;
  const a = startAgentProcess(
    {
      node: { name: NODE },
      broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
      stateDir: stateDir(),
      fetch: { progressIntervalMs: 200, backoffBaseMs: 50, backoffMaxMs: 300, stallTimeoutMs: 10_000, ...fetch },
      log: { level: 'debug' },
    },
    ['--no-serve'],
  );
  agents.push(a);
  await Promise.race([waitFor(() => cloud.hellos.length > hellos, 30_000, 'the agent to say hello'), died(a)]);
  return a;
}

/** Rejects (with the agent's stderr) if the agent exits: a dead daemon fails at once, not at a timeout. */
function died(a: AgentProcess): Promise<never> {
  return a.exited.then((code) => {
    throw new Error(`the agent exited (code ${code}, signal ${a.child.signalCode}); stderr:\n${a.stderr()}`);
  });
}

async function status(a: AgentProcess, pred: (s: StatusContent) => boolean, what: string, timeoutMs = 60_000): Promise<StatusContent> {
  return Promise.race([cloud.waitStatus(pred, { what, timeoutMs }), died(a)]);
}

interface Archive {
  body: Buffer;
  sha256: string;
  files: Record<string, Buffer>;
}

/** A .tar.gz of incompressible files; `tag` is written into each so two archives never match. */
async function archive(tag: string, opts: { files?: number; fileBytes?: number; gzip?: boolean } = {}): Promise<Archive> {
  const src = join(work, `src-${tag}`);
  const files: Record<string, Buffer> = { 'tag.txt': Buffer.from(tag) };
  for (let i = 0; i < (opts.files ?? 2); i++) files[`weights/part-${i}.bin`] = Buffer.concat([Buffer.from(`${tag}:`), randomBytes(opts.fileBytes ?? 64 * 1024)]);
  await makeTree(src, files);
  const gzip = opts.gzip ?? true;
  const file = await packDir(src, join(work, gzip ? `${tag}.tar.gz` : `${tag}.tar`), { gzip });
  rmSync(src, { recursive: true, force: true });
  const body = readFileSync(file);
  return { body, sha256: faultObject(body, '').sha256, files };
}

/** A fault server for these archives: object i is `archives[i]`, with ETag `etags[i]` (default: one each). */
async function serve(archives: Archive[], etags = archives.map((_, i) => `"obj-${i}"`)): Promise<FaultServer> {
  const s = await startFaultServer({ objects: archives.map((a, i) => faultObject(a.body, etags[i], i + 1)), seed: SEED });
  servers.push(s);
  return s;
}

/** A reset offset in the middle half of the archive, from the server's PRNG. */
const half = (s: FaultServer, a: Archive) => Math.floor(a.body.length * (0.25 + 0.5 * s.random()));

const content = (name: string, generation: number, url: string, sha256: string, version = '1'): ModelContent => ({
  metadata: { name, namespace: 'default', uid: `uid-${name}`, generation },
  spec: { modelName: name, deployToLayer: 'edge', manifest: [{ version, downloadURL: url, sha256sum: sha256 }], targetVersion: version },
});

/** What `name` has on disk is exactly `a`: current -> versions/<version>@<sha256>, every file equal, the blob stored. */
function expectInstalled(name: string, version: string, a: Archive) {
  const p = paths();
  expect(readlinkSync(p.current('default', name))).toBe(`versions/${version}@${a.sha256}`);
  const dir = p.treeDir('default', name, { version, sha256: a.sha256 });
  for (const [rel, data] of Object.entries(a.files)) expect(readFileSync(join(dir, rel)).equals(data), rel).toBe(true);
  expect(readFileSync(p.blob(a.sha256)).equals(a.body)).toBe(true);
}

/** Nothing of `name` was installed, and no blob with this digest is stored. */
function expectNothingInstalled(name: string, sha256: string) {
  const p = paths();
  expect(existsSync(p.current('default', name))).toBe(false);
  expect(existsSync(p.versionsDir('default', name)) ? readdirSync(p.versionsDir('default', name)) : []).toEqual([]);
  expect(existsSync(p.blob(sha256))).toBe(false);
}

/**
 * Resolves once the agent has taken in `bytes` of model `name`'s download (its progress says so;
 * the agent must run with progressIntervalMs 0), so a reset there loses none of them.
 */
const consumed = (name: string, bytes: number) => () =>
  cloud.waitStatus((x) => x.name === name && x.phase === 'Downloading' && (x.progress?.bytes ?? 0) >= bytes, { what: `${name} to take in ${bytes} bytes` });

/** The daemon is alive and still does its job: the process runs, and a new model is delivered from a sound server. */
async function expectAlive(a: AgentProcess) {
  expect(a.child.exitCode).toBeNull();
  expect(a.child.signalCode).toBeNull();
  const name = `probe-${++probes}`;
  const good = await archive(name, { files: 1, fileBytes: 1024 });
  const s = await serve([good]);
  await cloud.update(NODE, content(name, 1, s.urlFor(`/${name}.tar.gz`), good.sha256));
  await status(a, (x) => x.name === name && x.phase === 'Installed', `${name} installed`);
  expectInstalled(name, '1', good);
  expect(a.child.exitCode).toBeNull();
  expect(a.stderr()).not.toMatch(/AssertionError|uncaught/i);
}

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'e2e-faults-'));
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
});

afterEach(async () => {
  for (const a of agents) await a.end();
  agents = [];
  await cloud.close();
  for (const s of servers) await s.stop();
  servers = [];
  for (const p of pythons) await p.stop();
  pythons = [];
  await broker.close();
  rmSync(work, { recursive: true, force: true });
});

describe(`HTTP faults end to end (FAULT_SEED=${SEED})`, { timeout: 180_000 }, () => {
  it('installs an HTTP/1.0 body with no Content-Length that ends when the server closes', async () => {
    const a1 = await archive('v1', { files: 4, fileBytes: 512 * 1024 });
    const s = await serve([a1]);
    s.fallback = { kind: 'http10' };
    const a = await agent();
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    await status(a, (x) => x.name === 'm' && x.phase === 'Installed', 'installed');
    expectInstalled('m', '1', a1);
    expect(s.requests.map((r) => [r.fault, r.status])).toEqual([['http10', 200]]);
    await expectAlive(a);
  });

  it('reports DigestMismatch for an HTTP/1.0 body cut short by a clean close (indistinguishable from its end) and installs nothing', async () => {
    const a1 = await archive('v1', { files: 4, fileBytes: 512 * 1024 });
    const s = await serve([a1]);
    const endAt = 1 + Math.floor(s.random() * (a1.body.length - 1));
    s.fallback = { kind: 'http10', endAt };
    const a = await agent();
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    const failed = await status(a, (x) => x.name === 'm' && x.phase === 'Failed', `Failed (cut at ${endAt} of ${a1.body.length})`);
    expect(failed.reason).toBe('DigestMismatch');
    expect(failed.message).toContain(a1.sha256);
    expectNothingInstalled('m', a1.sha256);
    await expectAlive(a);
  });

  it('survives a FIN right behind a whole body it has not read yet (Connection: close, body paused; undici#5360)', async () => {
    // The bandwidth cap keeps the agent behind the server the whole way, so the parser is paused
    // with the rest of the body and the FIN already waiting: the undici 7 crash's set-up (it died
    // on 6 runs in 8 of two such deliveries, on 2 in 4 of three; five here).
    const versions: Archive[] = [];
    for (const v of ['v1', 'v2', 'v3', 'v4', 'v5']) versions.push(await archive(v, { files: 4, fileBytes: 1024 * 1024 }));
    const s = await serve(versions);
    const a = await agent({ bandwidth: '8MiB' });
    for (const [i, v] of versions.entries()) {
      s.fallback = { kind: 'closeBehindBody', object: i };
      const from = cloud.statuses.length;
      await cloud.update(NODE, content('m', i + 1, s.urlFor(`/v${i + 1}.tar.gz`), v.sha256, String(i + 1)));
      // servingVersion too: a step of the previous version that ends just after the new spec arrived reports Installed under the new generation.
      await Promise.race([cloud.waitStatus((x) => x.name === 'm' && x.observedGeneration === i + 1 && x.phase === 'Installed' && x.servingVersion === String(i + 1), { from, what: `v${i + 1} installed` }), died(a)]);
      expectInstalled('m', String(i + 1), v);
    }
    expect(s.requests.every((r) => r.fault === 'closeBehindBody' && r.status === 200)).toBe(true);
    await expectAlive(a);
  });

  it('starts over when a Range is answered 200 with other bytes under the same ETag, and installs only those bytes', async () => {
    const old = await archive('old', { files: 4, fileBytes: 256 * 1024 });
    const now = await archive('new', { files: 4, fileBytes: 256 * 1024 });
    const s = await serve([old, now], ['"same"', '"same"']);
    const at = half(s, old);
    s.script({ kind: 'reset', object: 0, atByte: at, hold: consumed('m', at) }, { kind: 'rangeAs200', object: 1 });
    s.fallback = { kind: 'rangeAs200', object: 1 };
    const a = await agent({ progressIntervalMs: 0 });
    await cloud.update(NODE, content('m', 1, s.url, now.sha256));
    await status(a, (x) => x.name === 'm' && x.phase === 'Installed', `installed (requests ${JSON.stringify(s.requests)})`);
    expectInstalled('m', '1', now);
    expect(s.requests[1]).toMatchObject({ fault: 'rangeAs200', range: `bytes=${at}-`, status: 200, object: 1 });
    await expectAlive(a);
  });

  it('reports DigestMismatch when a Range is answered 200 with bytes other than the digest names', async () => {
    const old = await archive('old', { files: 4, fileBytes: 256 * 1024 });
    const now = await archive('new', { files: 4, fileBytes: 256 * 1024 });
    const s = await serve([old, now], ['"same"', '"same"']);
    const at = half(s, old);
    s.script({ kind: 'reset', object: 0, atByte: at, hold: consumed('m', at) });
    s.fallback = { kind: 'rangeAs200', object: 1 };
    const a = await agent({ progressIntervalMs: 0 });
    await cloud.update(NODE, content('m', 1, s.url, old.sha256));
    const failed = await status(a, (x) => x.name === 'm' && x.phase === 'Failed', 'Failed');
    expect(failed.reason).toBe('DigestMismatch');
    expect(failed.message).toContain(now.sha256);
    expect(s.requests[1]).toMatchObject({ range: `bytes=${at}-`, status: 200, object: 1 });
    expectNothingInstalled('m', old.sha256);
    await expectAlive(a);
  });

  it('starts over when the object changed between attempts (new ETag, If-Range not matched) and installs the new object', async () => {
    const old = await archive('old', { files: 4, fileBytes: 256 * 1024 });
    const now = await archive('new', { files: 4, fileBytes: 256 * 1024 });
    const s = await serve([old, now]);
    const at = half(s, old);
    s.script({ kind: 'reset', object: 0, atByte: at, hold: consumed('m', at) });
    s.fallback = { kind: 'ok', object: 1 };
    const a = await agent({ progressIntervalMs: 0 });
    await cloud.update(NODE, content('m', 1, s.url, now.sha256));
    await status(a, (x) => x.name === 'm' && x.phase === 'Installed', 'installed');
    expectInstalled('m', '1', now);
    expect(s.requests[1]).toMatchObject({ range: `bytes=${at}-`, ifRange: '"obj-0"', status: 200, object: 1 });
    await expectAlive(a);
  });

  it('starts over when a resume gets a 206 from a changed object (server ignores If-Range, new ETag)', async () => {
    const old = await archive('old', { files: 4, fileBytes: 256 * 1024 });
    const now = await archive('new', { files: 4, fileBytes: 256 * 1024 });
    const s = await serve([old, now]);
    const at = half(s, old);
    s.script({ kind: 'reset', object: 0, atByte: at, hold: consumed('m', at) }, { kind: 'ok', object: 1, ignoreIfRange: true });
    s.fallback = { kind: 'ok', object: 1 };
    const a = await agent({ progressIntervalMs: 0 });
    await cloud.update(NODE, content('m', 1, s.url, now.sha256));
    await status(a, (x) => x.name === 'm' && x.phase === 'Installed', 'installed');
    expectInstalled('m', '1', now);
    expect(s.requests[1]).toMatchObject({ range: `bytes=${at}-`, status: 206, object: 1 });
    expect(s.requests[2]).toMatchObject({ range: undefined, status: 200, object: 1 });
    await expectAlive(a);
  });

  it('reports DigestMismatch, installing nothing, when the object changed under the same ETag and size and the resume mixed the two', async () => {
    // Plain tars of same-sized files: the two objects have the same length, so nothing but the digest can tell.
    const old = await archive('old', { files: 4, fileBytes: 256 * 1024, gzip: false });
    const now = await archive('new', { files: 4, fileBytes: 256 * 1024, gzip: false });
    expect(now.body.length).toBe(old.body.length);
    const s = await serve([old, now], ['"same"', '"same"']);
    const at = 1024 + Math.floor(s.random() * (old.body.length - 2048));
    s.script({ kind: 'reset', object: 0, atByte: at, hold: consumed('m', at) });
    s.fallback = { kind: 'ok', object: 1 };
    const a = await agent({ progressIntervalMs: 0 });
    await cloud.update(NODE, content('m', 1, s.url, now.sha256));
    const failed = await status(a, (x) => x.name === 'm' && x.phase === 'Failed', `Failed (reset at ${at})`);
    expect(failed.reason).toBe('DigestMismatch');
    expect(s.requests[1]).toMatchObject({ range: `bytes=${at}-`, status: 206, object: 1 });
    expectNothingInstalled('m', now.sha256);
    await expectAlive(a);
  });

  it('resumes through TCP resets at seeded offsets and installs the exact bytes', async () => {
    const a1 = await archive('v1', { files: 4, fileBytes: 1024 * 1024 });
    const s = await serve([a1]);
    const size = a1.body.length;
    const offsets = Array.from({ length: 4 }, () => 1 + Math.floor(s.random() * (size - 1))).sort((x, y) => x - y);
    s.script(...offsets.map((atByte): Fault => ({ kind: 'reset', atByte, hold: consumed('m', atByte) })));
    const a = await agent({ progressIntervalMs: 0, attempts: 8 });
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    await status(a, (x) => x.name === 'm' && x.phase === 'Installed', `installed (resets at ${offsets})`);
    expectInstalled('m', '1', a1);
    expect(s.requests.map((r) => r.fault)).toEqual(['reset', 'reset', 'reset', 'reset', 'ok']);
    // Every retry resumed exactly where the reset cut it, never from zero.
    expect(s.requests.slice(1).map((r) => [r.range, r.status])).toEqual(offsets.map((o) => [`bytes=${o}-`, 206]));
    expect(s.bytesSent()).toBe(size);
    await expectAlive(a);
  });

  // With nothing to wait for, each RST lands while the agent is behind and the body paused:
  // undici 7 died of that too (the same assert(!this.paused), from onHttpSocketError on
  // ECONNRESET; 9 runs in 9 here), so this is also a guard for undici#5360.
  it('reports SizeMismatch after its attempts when every answer is reset at a random offset, and installs nothing', async () => {
    const a1 = await archive('v1', { files: 4, fileBytes: 256 * 1024 });
    const s = await serve([a1]);
    s.fallback = { kind: 'reset' };
    const a = await agent({ attempts: 3 });
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    const failed = await status(a, (x) => x.name === 'm' && x.phase === 'Failed', 'Failed');
    expect(failed.reason).toBe('SizeMismatch');
    expect(s.requests).toHaveLength(3);
    expectNothingInstalled('m', a1.sha256);
    await expectAlive(a);
  });

  it('ends in Stalled when the response head trickles and never ends (slowloris headers)', async () => {
    const a1 = await archive('v1');
    const s = await serve([a1]);
    s.fallback = { kind: 'trickle', in: 'headers', bytes: 1, everyMs: 100 };
    const a = await agent({ attempts: 2, connectTimeoutMs: 1000, stallTimeoutMs: 1500 });
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    const failed = await status(a, (x) => x.name === 'm' && x.phase === 'Failed', 'Failed');
    expect(failed.reason).toBe('Stalled');
    expect(s.requests).toHaveLength(2);
    expectNothingInstalled('m', a1.sha256);
    await expectAlive(a);
  });

  it('keeps delivering other models while a body trickles a few bytes at a time (slowloris body)', async () => {
    const a1 = await archive('v1', { files: 2, fileBytes: 256 * 1024 });
    const s = await serve([a1]);
    s.fallback = { kind: 'trickle', in: 'body', bytes: 16, everyMs: 50 };
    const a = await agent({ attempts: 2, stallTimeoutMs: 1500 });
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    await status(a, (x) => x.name === 'm' && x.phase === 'Downloading' && (x.progress?.bytes ?? 0) > 0, 'trickled bytes arriving');
    await expectAlive(a);
    expect(s.requests[0].clientGone).toBeUndefined();
  });

  // Guarantee 4 says every failure ends in a terminal state within a bounded time. A body that
  // trickles faster than the stall timeout never tripped it: it stayed Downloading for as long as
  // the server liked (~10 minutes here; any server can make it days). The low-speed floor
  // (fetch.lowSpeedBytesPerSec over fetch.lowSpeedWindowMs) ends it.
  it('ends a slowloris body (16 bytes every 50 ms, stall timeout 1.5 s) in a terminal Failed within 45 s', async () => {
    const a1 = await archive('v1', { files: 2, fileBytes: 256 * 1024 });
    const s = await serve([a1]);
    s.fallback = { kind: 'trickle', in: 'body', bytes: 16, everyMs: 50 };
    const a = await agent({ attempts: 2, stallTimeoutMs: 1500, lowSpeedBytesPerSec: 1024, lowSpeedWindowMs: 3000 });
    await cloud.update(NODE, content('m', 1, s.url, a1.sha256));
    const failed = await status(a, (x) => x.name === 'm' && x.phase === 'Failed', 'a terminal Failed', 45_000);
    expect(failed.reason).toBe('Stalled');
  });
});

function sha256File(path: string): string {
  return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0];
}

// Finding 2 of "the daemon never exits": undici 7 died on an uncatchable
// `AssertionError: assert(!this.paused)` in Parser.finish (from onHttpSocketEnd) when a server
// closed the connection (HTTP/1.0, Connection: close) while the body was paused by backpressure:
// Python's http.server with a large archive, 2 runs in 4 (nodejs/undici#5360, fixed in undici 8).
// Here the 256 MiB delivery never met it (its message always completed before the socket's end:
// 0 runs in 9 with undici 7.30.2); archives small enough to sit whole in the socket buffers, read
// by an agent held back by its bandwidth cap, do (8 runs in 8 of five deliveries).
describe('Python http.server (HTTP/1.0) as the peer', { timeout: 300_000 }, () => {
  const MiB = 1024 * 1024;
  let big: string;
  let bigArchive: { sha256: string; weightsSha256: string };

  beforeAll(async () => {
    // 256 MiB of incompressible data in a .tar.gz: the agent unpacks while it downloads, and
    // the body is paused again and again while Python writes as fast as loopback allows.
    big = mkdtempSync(join(tmpdir(), 'e2e-faults-big-'));
    const src = join(big, 'src');
    mkdirSync(join(src, 'weights'), { recursive: true });
    mkdirSync(join(big, 'www'));
    execFileSync('sh', ['-c', `head -c ${256 * MiB} /dev/urandom > "${join(src, 'weights', 'big.bin')}" && printf big > "${join(src, 'tag.txt')}"`]);
    const weightsSha256 = sha256File(join(src, 'weights', 'big.bin'));
    const archivePath = join(big, 'www', 'big.tar.gz');
    execFileSync('tar', ['-I', 'gzip -1', '-cf', archivePath, '-C', src, '.']);
    rmSync(src, { recursive: true, force: true });
    bigArchive = { sha256: sha256File(archivePath), weightsSha256 };
  }, 120_000);

  afterAll(() => {
    if (big) rmSync(big, { recursive: true, force: true });
  });

  /** Delivers the big archive from a fresh Python server and checks what was installed, byte for byte. */
  async function deliverFromPython(fetch: Record<string, unknown>) {
    const py = await python(join(big, 'www'));
    const a = await agent({ stallTimeoutMs: 30_000, ...fetch });
    await cloud.update(NODE, content('big', 1, py.url('big.tar.gz'), bigArchive.sha256));
    await status(a, (x) => x.name === 'big' && x.phase === 'Installed', 'the big archive installed', 240_000);
    const dir = paths().treeDir('default', 'big', { version: '1', sha256: bigArchive.sha256 });
    expect(readlinkSync(paths().current('default', 'big'))).toBe(`versions/1@${bigArchive.sha256}`);
    expect(sha256File(join(dir, 'weights', 'big.bin'))).toBe(bigArchive.weightsSha256);
    expect(readFileSync(join(dir, 'tag.txt'), 'utf8')).toBe('big');
    expect(py.log()).toMatch(/"GET \/big\.tar\.gz HTTP\/1\.1" 200 -/);
    await expectAlive(a);
  }

  it('delivers a 256 MiB archive from python3 -m http.server --protocol HTTP/1.0 and stays alive (undici#5360)', async () => {
    await deliverFromPython({});
  });

  it('delivers archives that fit in the socket buffers from python3 -m http.server with the agent behind it (bandwidth cap; undici#5360)', async () => {
    // Python has written the whole body and closed before the agent (held back by its cap) has
    // read it: the FIN waits behind unread bytes while the body is paused. Whether the parser is
    // paused at the very last bytes is a matter of timing, so five versions in turn (undici 7
    // died on 7 runs in 8 of three).
    const www = join(work, 'www');
    mkdirSync(www);
    const py = await python(www);
    const a = await agent({ bandwidth: '8MiB' });
    for (let v = 1; v <= 5; v++) {
      const arc = await archive(`small-${v}`, { files: 4, fileBytes: 1024 * 1024 });
      writeFileSync(join(www, `small-${v}.tar.gz`), arc.body);
      const from = cloud.statuses.length;
      await cloud.update(NODE, content('small', v, py.url(`small-${v}.tar.gz`), arc.sha256, String(v)));
      await Promise.race([cloud.waitStatus((x) => x.name === 'small' && x.observedGeneration === v && x.phase === 'Installed' && x.servingVersion === String(v), { from, what: `v${v} installed` }), died(a)]);
      expectInstalled('small', String(v), arc);
    }
    expect(py.log().match(/"GET \/small-\d\.tar\.gz HTTP\/1\.1" 200 -/g)).toHaveLength(5);
    await expectAlive(a);
  });
});
