import { createCipheriv, createHash, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';
import { seededRandom } from '../helpers/fault-server.js';

// Guarantee 1 under kill -9, round after round. Every round brings a version never installed
// before (a few MB in a few hundred files, each file naming its version), publishes a spec
// targeting it, SIGKILLs the agent in the first download, the unpack or the switch, checks
// `current`, starts the agent again on the same state directory, waits for it to converge on the
// round's version and checks `current` again. Which phase a kill is aimed at adapts to where the
// earlier ones landed; where it landed is read afterwards from what the agent itself wrote before
// it died (see `landing`), never from the aim.
//
//   MODELD_TORTURE_ROUNDS         rounds (default 12, for CI; the full run is 30 or more)
//   MODELD_TORTURE_SEED           seed of the file contents, the aims and the kill instants (printed)
//   MODELD_TORTURE_MIN_PER_PHASE  kills that must land in each phase (default 5 from 30 rounds on, else rounds/12: 1 for 12)
//
// The seed makes contents and choices reproducible; the instants the agent reaches are the
// machine's, so a rerun with the same seed aims the same way but may land elsewhere.

/** Reads a knob, then takes it out of the environment: the agent (a child) would read any MODELD_* as a config key. */
const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  delete process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, not '${raw}'`);
  return n;
};

const ROUNDS = envInt('MODELD_TORTURE_ROUNDS', 12);
const SEED = envInt('MODELD_TORTURE_SEED', randomInt(1, 2 ** 31));
// CI's short run asks for one kill per phase: where a kill lands depends on the machine's timing, and a loaded CI must not fail on aim.
const MIN_PER_PHASE = envInt('MODELD_TORTURE_MIN_PER_PHASE', ROUNDS >= 30 ? 5 : Math.max(1, Math.floor(ROUNDS / 12)));

/** Bytes per second for the agent's downloads (fetch.bandwidth): a ~3 MB archive takes about 2 s. */
const BANDWIDTH = 1536 * 1024;
const NODE = 'edge-1';
const NS = 'default';
const NAME = 'resnet';
const MARKER = '.modeld-complete';

const PHASES = ['download', 'unpack', 'switch'] as const;
type Phase = (typeof PHASES)[number];
/** Where a kill landed: one of the phases, or before the agent started on the version, or after it was done. */
type Landing = Phase | 'before' | 'after';


const seedOf = (...parts: Array<string | number>) => createHash('sha256').update(parts.join('/')).digest().readUInt32LE(0);

/** Deterministic incompressible bytes (AES-CTR keystream), so the archive is as big as its content. */
const noise = (n: number, ...key: Array<string | number>) =>
  createCipheriv('aes-256-ctr', createHash('sha256').update(key.join('/')).digest(), Buffer.alloc(16)).update(Buffer.alloc(n));

interface Known {
  version: string;
  /** Relative path -> exact bytes; every file starts with a line naming the version. */
  files: Map<string, Buffer>;
}

interface Version extends Known {
  server: ChaosServer;
  sha256: string;
  size: number;
}

let work: string;
let broker: Broker;
let cloud: Cloud;
const agents: AgentProcess[] = [];
const servers: ChaosServer[] = [];
/** The spec the cloud wants now: what it syncs when the agent says hello. */
let desired: ModelContent | undefined;
const stateDir = () => join(work, 'state');
const modelDir = () => join(stateDir(), 'models', NS, NAME);

/** A version's files: 200-349 files of 6-14 KiB under a few directories, seeded. */
function versionFiles(version: string): Map<string, Buffer> {
  const r = seededRandom(seedOf(SEED, 'files', version));
  const files = new Map<string, Buffer>();
  files.set('version.txt', Buffer.from(`${version}\n`));
  const count = 200 + Math.floor(r() * 150);
  for (let i = 0; i < count; i++) {
    const rel = `layer-${i % 7}/shard-${String(i).padStart(4, '0')}.bin`;
    const head = Buffer.from(`modeld torture seed=${SEED} version=${version} file=${rel}\n`);
    files.set(rel, Buffer.concat([head, noise(6 * 1024 + Math.floor(r() * 8 * 1024), SEED, version, rel)]));
  }
  return files;
}

async function makeVersion(version: string): Promise<Version> {
  const files = versionFiles(version);
  const src = join(work, `src-${version}`);
  await makeTree(src, Object.fromEntries(files));
  const file = await packDir(src, join(work, `v${version}.tar.gz`), { gzip: true });
  const body = readFileSync(file);
  rmSync(src, { recursive: true, force: true });
  rmSync(file, { force: true });
  const server = await startChaosServer({ body });
  servers.push(server);
  return { version, files, server, sha256: server.sha256, size: body.length };
}

const content = (generation: number, v: Version): ModelContent => ({
  metadata: { name: NAME, namespace: NS, uid: `uid-${NAME}`, generation },
  spec: {
    modelName: NAME,
    deployToLayer: 'edge',
    nodeSelector: { zone: 'a' },
    manifest: [{ version: v.version, downloadURL: v.server.urlFor(`/${v.version}.tar.gz`), sha256sum: v.sha256 }],
    targetVersion: v.version,
  },
});

interface Agent {
  a: AgentProcess;
  /** Resolves once the process is gone and its stdout is read to the end. */
  closed: Promise<void>;
}

/** Starts the agent (--no-serve) on the shared state directory and waits for its hello. */
async function startAgent(): Promise<Agent> {
  const hellos = cloud.hellos.length;
  const a = startAgentProcess(
    {
      node: { name: NODE, labels: { zone: 'a' } },
      broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
      stateDir: stateDir(),
      fetch: { progressIntervalMs: 50, backoffBaseMs: 50, backoffMaxMs: 500, stallTimeoutMs: 60_000, bandwidth: BANDWIDTH },
      log: { level: 'debug' },
    },
    ['--no-serve'],
  );
  agents.push(a);
  const closed = once(a.child, 'close').then(() => undefined);
  await Promise.race([
    waitFor(() => cloud.hellos.length > hellos, 120_000, 'the agent to say hello'),
    a.exited.then((code) => {
      throw new Error(`the agent exited (${code}) before its hello: ${a.stderr()}`);
    }),
  ]);
  return { a, closed };
}

// ---- Milestones: what the agent's own JSON log lines say it has reached for a version ----------

const MILESTONES = ['fetch', 'downloading', 'verified', 'installing', 'switch', 'installed'] as const;
type Milestone = (typeof MILESTONES)[number];

interface Progress {
  /** The furthest milestone reached, if any. */
  at?: Milestone;
  /** Log time (ms) of the first line of each milestone. */
  times: Partial<Record<Milestone, number>>;
  /** The last byte count it reported for the download, and the total. */
  bytes: number;
  totalBytes?: number;
  failed?: string;
}

type Line = Record<string, unknown>;

/** The milestone one log line marks for `version`, if any. */
function milestoneOf(l: Line, version: string): Milestone | undefined {
  const step = l.step as { kind?: string; version?: string; tree?: { version?: string } } | undefined;
  if (l.msg === 'step' && (step?.version ?? step?.tree?.version) === version) {
    // An install step (no overlapped unpack) runs only once the archive verified. The switch is
    // `serve` (traffic moves; a no-op with --no-serve) then `point` (the link and the row).
    return step!.kind === 'fetch' ? 'fetch' : step!.kind === 'serve' || step!.kind === 'point' ? 'switch' : step!.kind === 'install' ? 'verified' : undefined;
  }
  if (l.version !== version) return undefined;
  if (l.msg === 'download verified' || l.phase === 'Verifying') return 'verified';
  if (l.phase === 'Downloading') return 'downloading';
  if (l.phase === 'Installing') return 'installing';
  if (l.phase === 'Installed' && l.servingVersion === version) return 'installed';
  return undefined;
}

function progressOf(lines: Line[], version: string, p: Progress = { times: {}, bytes: 0 }): Progress {
  for (const l of lines) {
    if (l.version === version && l.phase === 'Failed') p.failed = `${l.reason}: ${l.msg}`;
    const m = milestoneOf(l, version);
    if (!m) continue;
    if (m === 'downloading') {
      const prog = l.progress as { bytes?: number; totalBytes?: number } | undefined;
      if (prog?.bytes !== undefined) p.bytes = prog.bytes;
      if (prog?.totalBytes !== undefined) p.totalBytes = prog.totalBytes;
    }
    p.times[m] ??= Number(l.time);
    if (p.at === undefined || MILESTONES.indexOf(m) > MILESTONES.indexOf(p.at)) p.at = m;
  }
  return p;
}

/**
 * Where a kill landed, from the lines the agent wrote before it died. Its stdout is a pipe, which
 * Node writes synchronously on Linux: every line it wrote before SIGKILL is in the pipe, and read
 * once stdout ends. So the furthest milestone it logged names the stretch it died in: after that
 * line, before the next milestone's (download: fetch step to "download verified"; unpack: to the
 * switch step, Verifying then Installing; switch: to Installed).
 */
function landing(p: Progress): Landing {
  switch (p.at) {
    case undefined:
      return 'before';
    case 'fetch':
    case 'downloading':
      return 'download';
    case 'verified':
    case 'installing':
      return 'unpack';
    case 'switch':
      return 'switch';
    case 'installed':
      return 'after';
  }
}

// ---- Judging `current` (Guarantee 1), through the link alone -----------------------------------

/** Relative paths of every non-directory under `root`. */
function listFiles(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(root, p));
    else out.push(p);
  }
  return out;
}

interface Judged {
  /** The one known version `current` holds exactly; undefined when there is no `current`. */
  version?: string;
  marker?: boolean;
}

/**
 * What `current` holds: follows the link wherever it points (the layout behind it may change) and
 * requires the tree there to be exactly one known version's files, byte for byte, and nothing else
 * but the completion marker. The marker is expected there; should it move elsewhere, the exact
 * match alone is accepted (`marker: false` is recorded).
 */
function judgeCurrent(known: Known[], dirs = { model: modelDir(), state: stateDir() }): Judged {
  const link = join(dirs.model, 'current');
  if (!lstatSync(link, { throwIfNoEntry: false })) return {};
  let root: string;
  try {
    root = realpathSync(link);
  } catch (err) {
    throw new Error(`current dangles (-> ${readlinkSync(link)}): ${(err as Error).message}`);
  }
  const staging = join(realpathSync(dirs.state), 'staging') + sep;
  if (root.startsWith(staging)) throw new Error(`current points into staging/ (emptied at start): ${root}`);
  const present = listFiles(root);
  const marker = present.includes(MARKER);
  const files = present.filter((p) => p !== MARKER);
  const bytes = new Map(files.map((p) => [p, readFileSync(join(root, p))]));
  const matches = known.filter((k) => k.files.size === files.length && files.every((p) => k.files.get(p)?.equals(bytes.get(p)!)));
  if (matches.length !== 1) throw new Error(`current (-> ${readlinkSync(link)}) is not exactly one known version: ${describeTree(bytes, known)}`);
  return { version: matches[0].version, marker };
}

/** For a failure message: which versions the files of a tree belong to, and what is missing or extra. */
function describeTree(bytes: Map<string, Buffer>, known: Known[]): string {
  const owners = new Map<string, number>();
  let foreign = 0;
  for (const [p, b] of bytes) {
    const owner = known.find((k) => k.files.get(p)?.equals(b));
    if (owner) owners.set(owner.version, (owners.get(owner.version) ?? 0) + 1);
    else foreign++;
  }
  const parts = [...owners].map(([v, n]) => `${n} files of version ${v} (which has ${known.find((k) => k.version === v)!.files.size})`);
  return `${bytes.size} files: ${parts.join(', ') || 'none of a known version'}${foreign ? `, ${foreign} matching no known version` : ''}`;
}

/** Files written under staging/ (the unpack's partial trees), for the record. */
function stagedFiles(): number {
  try {
    return listFiles(join(stateDir(), 'staging')).length;
  } catch {
    return 0;
  }
}

// ---- Aiming and firing one kill ------------------------------------------------------------------

interface Aim {
  phase: Phase;
  /** download: kill once the agent reports this fraction of the archive received. */
  fraction: number;
  /** unpack: kill this long after the agent logs the download verified; switch: after it logs the switch step. */
  delayMs: number;
}

/**
 * Arms the kill for `version` on the lines `ag` writes from `cursor` on, and resolves (with what
 * the test had seen when it fired) once SIGKILL was sent. The test reads the lines as they come
 * (its listener runs after the helper's, which parses them into `logs`).
 */
function armKill(ag: Agent, version: string, aim: Aim, cursor: number): Promise<string> {
  const { a } = ag;
  const stdout = a.child.stdout!;
  return new Promise<string>((resolve, reject) => {
    let fired = false;
    let timer: NodeJS.Timeout | undefined;
    const seen: Progress = { times: {}, bytes: 0 };
    const fire = (why: string) => {
      if (fired) return;
      fired = true;
      clearTimeout(timer);
      stdout.off('data', onData);
      a.child.kill('SIGKILL');
      resolve(why);
    };
    const onData = () => {
      const fresh = a.logs.slice(cursor);
      cursor = a.logs.length;
      progressOf(fresh, version, seen);
      const at = seen.at;
      if (at === 'installed') return fire('saw Installed (too late)');
      if (aim.phase === 'download') {
        const total = seen.totalBytes ?? Infinity;
        if (at === 'downloading' && seen.bytes >= aim.fraction * total) return fire(`saw ${((100 * seen.bytes) / total).toFixed(0)}% downloaded`);
        if (at === 'verified' || at === 'installing' || at === 'switch') return fire(`saw ${at} (download over before ${(aim.fraction * 100).toFixed(0)}%)`);
      }
      const from = aim.phase === 'unpack' ? ['verified', 'installing', 'switch'] : aim.phase === 'switch' ? ['switch'] : [];
      if (!timer && at && from.includes(at)) {
        if (aim.delayMs === 0) return fire(`saw ${at}`);
        // The deliberate kill delay: the instant within the phase is what this round tests.
        const t0 = Date.now();
        timer = setTimeout(() => fire(`${Date.now() - t0} ms after seeing ${at}`), aim.delayMs);
      }
    };
    stdout.on('data', onData);
    a.exited.then((code) => {
      if (!fired) reject(new Error(`the agent exited by itself (${code}) before the kill: ${a.stderr()}`));
    });
    waitFor(() => fired, 180_000, `the kill's trigger (${aim.phase})`).catch((err: Error) => {
      reject(err);
      fire('trigger timed out');
    });
  });
}

interface Row {
  round: number;
  version: string;
  aim: string;
  seen: string;
  landed: Landing;
  /** Where within the phase, from the same evidence. */
  sub: string;
  detail: string;
  afterKill: string;
  marker: string;
  convergeS: string;
  result: string;
}

function table(rows: Row[]): string {
  const cols: Array<keyof Row> = ['round', 'version', 'aim', 'seen', 'landed', 'sub', 'detail', 'afterKill', 'marker', 'convergeS', 'result'];
  const width = (c: keyof Row) => Math.max(c.length, ...rows.map((r) => String(r[c]).length));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(width(cols[i]))).join(' | ');
  return [line(cols), line(cols.map((c) => '-'.repeat(width(c)))), ...rows.map((r) => line(cols.map((c) => String(r[c]))))].join('\n');
}

describe('the judge of current used by the torture', () => {
  it('accepts exactly one known version behind current, and refuses a mix, a missing, extra or changed file, a dangling link, staging', () => {
    const root = mkdtempSync(join(tmpdir(), 'torture-judge-'));
    try {
      const state = join(root, 'state');
      const model = join(state, 'models', NS, NAME);
      mkdirSync(join(state, 'staging'), { recursive: true });
      mkdirSync(model, { recursive: true });
      const known = (v: string): Known => ({ version: v, files: new Map(['version.txt', 'w/0.bin', 'w/1.bin'].map((p) => [p, Buffer.from(`${v}:${p}`)])) });
      const [a, b] = [known('a'), known('b')];
      const tree = (dir: string, files: Map<string, Buffer>, marker = true): string => {
        const at = join(state, dir);
        for (const [p, data] of files) {
          mkdirSync(dirname(join(at, p)), { recursive: true });
          writeFileSync(join(at, p), data);
        }
        if (marker) writeFileSync(join(at, MARKER), '{}');
        return at;
      };
      const point = (target: string) => {
        rmSync(join(model, 'current'), { force: true });
        symlinkSync(target, join(model, 'current'));
      };
      const judge = () => judgeCurrent([a, b], { model, state });
      const withFile = (k: Known, p: string, data?: Buffer) => {
        const m = new Map(k.files);
        if (data) m.set(p, data);
        else m.delete(p);
        return m;
      };

      expect(judge()).toEqual({});
      point(tree('trees/a', a.files));
      expect(judge()).toEqual({ version: 'a', marker: true });
      point(tree('trees/b-no-marker', b.files, false));
      expect(judge()).toEqual({ version: 'b', marker: false });
      point(tree('trees/mix', withFile(a, 'w/1.bin', b.files.get('w/1.bin'))));
      expect(judge).toThrow(/2 files of version a .* 1 files of version b/);
      point(tree('trees/missing', withFile(a, 'w/1.bin')));
      expect(judge).toThrow(/not exactly one known version: 2 files/);
      point(tree('trees/extra', withFile(a, 'w/2.bin', Buffer.from('a:w/2.bin'))));
      expect(judge).toThrow(/1 matching no known version/);
      point(tree('trees/changed', withFile(a, 'w/0.bin', Buffer.from('a:w/0.biN'))));
      expect(judge).toThrow(/1 matching no known version/);
      point(join(state, 'trees', 'gone'));
      expect(judge).toThrow(/current dangles/);
      point(tree('staging/unpacking', a.files));
      expect(judge).toThrow(/points into staging/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('kill -9 torture: a new version every round', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'torture-kill9-'));
    broker = await startMosquitto();
    cloud = await connectCloud(broker.url);
    // Like the controller, answer every hello with a full sync (DESIGN: the agent says hello after
    // each connect so the controller sends one). Without it, a kill between the agent recording a
    // status and queueing it loses that status for good (kill9-status-outbox.test.ts, found by
    // this torture) and the round would wait for an Installed that never comes.
    cloud.client.on('message', (_topic, payload) => {
      let msg: { route?: { operation?: string }; content?: { node?: string } };
      try {
        msg = JSON.parse(payload.toString());
      } catch {
        return;
      }
      if (msg.route?.operation === 'hello' && msg.content?.node === NODE && desired) void cloud.sync(NODE, [desired]);
    });
  });

  afterAll(async () => {
    for (const a of agents) await a.end();
    await cloud?.close();
    for (const s of servers) await s.stop();
    await broker?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it(
    `keeps current one complete version when killed in the first download, the unpack or the switch (${ROUNDS} rounds, seed ${SEED})`,
    { timeout: 300_000 + ROUNDS * 120_000 },
    async () => {
      console.log(`kill -9 torture: ${ROUNDS} rounds, seed ${SEED} (MODELD_TORTURE_SEED=${SEED} to aim the same way), at least ${MIN_PER_PHASE} kills per phase`);
      const started = Date.now();
      const pick = seededRandom(seedOf(SEED, 'aims'));
      const known: Version[] = [];
      const rows: Row[] = [];
      const landed: Record<Landing, number> = { download: 0, unpack: 0, switch: 0, before: 0, after: 0 };
      const unpackWindows: number[] = [];
      const learn = (p: Progress) => {
        if (p.times.verified !== undefined && p.times.switch !== undefined) unpackWindows.push(p.times.switch - p.times.verified);
      };

      /** Waits for Installed of `generation` on `v` (from status index `from`); a Failed fails the round. */
      const converge = async (generation: number, v: Version, from: number) => {
        const s = await cloud.waitStatus(
          (s) => s.name === NAME && s.observedGeneration === generation && ((s.phase === 'Installed' && s.servingVersion === v.version) || s.phase === 'Failed'),
          { from, what: `version ${v.version} installed (generation ${generation})`, timeoutMs: 180_000 },
        );
        if (s.phase === 'Failed') throw new Error(`version ${v.version} Failed: ${s.reason}: ${s.message}`);
      };

      // Version 0 is installed without a kill: from round 1 on there is always an old version serving.
      const v0 = await makeVersion('0');
      known.push(v0);
      let ag = await startAgent();
      let from = cloud.statuses.length;
      let cursor = ag.a.logs.length;
      desired = content(1, v0);
      await cloud.update(NODE, desired);
      await converge(1, v0, from);
      learn(progressOf(ag.a.logs.slice(cursor), v0.version));
      expect(judgeCurrent(known).version).toBe('0');
      let served = v0;

      for (let round = 1; round <= ROUNDS; round++) {
        const generation = round + 1;
        const v = await makeVersion(String(round));
        known.push(v);
        // Aim where the fewest kills have landed so far (ties broken by the seeded generator).
        const least = Math.min(...PHASES.map((p) => landed[p]));
        const candidates = PHASES.filter((p) => landed[p] === least);
        const phase = candidates[Math.floor(pick() * candidates.length)];
        // Unpack: a third of the kills in the first 20 ms after the download verified (the
        // unpacker finishing the tail), the rest anywhere in the shortest stretch seen so far (the
        // promotion: marker, read-only, fsync, rename). Switch: at once, or within 6 ms (the swap, then
        // recording it; by ~10 ms it is usually over).
        const window = unpackWindows.length ? Math.min(...unpackWindows) : 400;
        const [r1, r2] = [pick(), pick()];
        const aim: Aim = {
          phase,
          fraction: 0.05 + r2 * 0.85,
          delayMs: phase === 'unpack' ? Math.floor(r2 * (r1 < 1 / 3 ? 20 : 0.85 * window)) : phase === 'switch' && r1 >= 1 / 3 ? Math.floor(r2 * 6) : 0,
        };
        const aimText = phase === 'download' ? `download at ${(aim.fraction * 100).toFixed(0)}%` : `${phase} +${aim.delayMs} ms`;
        const row: Row = { round, version: v.version, aim: aimText, seen: '', landed: 'before', sub: '', detail: '', afterKill: '', marker: '', convergeS: '', result: 'FAILED' };
        rows.push(row);
        try {
          from = cloud.statuses.length;
          cursor = ag.a.logs.length;
          const killed = armKill(ag, v.version, aim, cursor);
          desired = content(generation, v);
          await cloud.update(NODE, desired);
          row.seen = await killed;
          await ag.closed;

          const p = progressOf(ag.a.logs.slice(cursor), v.version);
          learn(p);
          row.landed = landing(p);
          landed[row.landed]++;
          const staged = stagedFiles();
          const pct = p.totalBytes ? `${((100 * p.bytes) / p.totalBytes).toFixed(0)}%` : `${p.bytes} B`;
          row.detail = `last logged: ${p.at ?? 'nothing for it'}; ${pct} downloaded; ${staged} files in staging/`;
          if (row.landed === 'download') row.sub = staged > 0 ? 'unpack running beside it' : 'nothing unpacked yet';
          if (row.landed === 'unpack') row.sub = p.at === 'installing' ? 'promoting (Installing)' : 'unpacker finishing';
          if (p.failed) row.detail += `; Failed ${p.failed}`;

          // Guarantee 1 at the kill: the old version or the new one, complete, never nothing.
          const atKill = judgeCurrent(known);
          row.afterKill = atKill.version === undefined ? 'none' : atKill.version === v.version ? 'new' : atKill.version === served.version ? 'old' : `other (${atKill.version})`;
          row.marker = String(atKill.marker ?? '-');
          expect(atKill.version, 'current after the kill').toBeDefined();
          expect([served.version, v.version], 'current after the kill is the old or the new version').toContain(atKill.version);
          if (row.landed === 'switch') row.sub = atKill.version === v.version ? 'current already new' : 'current still old';

          // Restart on the same state directory: it converges on the round's version.
          const restarted = Date.now();
          ag = await startAgent();
          cursor = ag.a.logs.length;
          await converge(generation, v, from);
          row.convergeS = ((Date.now() - restarted) / 1000).toFixed(1);
          learn(progressOf(ag.a.logs.slice(cursor), v.version));
          const after = judgeCurrent(known);
          expect(after.version, 'current after the restart').toBe(v.version);
          served = v;
          row.result = 'ok';
        } catch (err) {
          console.log(`kill -9 torture FAILED at round ${round} (seed ${SEED}):\n${table(rows)}`);
          throw new Error(`round ${round} (seed ${SEED}, aim ${aimText}, landed ${row.landed}, seen '${row.seen}'): ${(err as Error).message}`, { cause: err });
        } finally {
          await v.server.stop();
        }
      }

      // Staging is left empty once the last round converged.
      await waitFor(() => stagedFiles() === 0, 60_000, 'staging/ emptied');
      const subs = (p: Landing) => {
        const n = new Map<string, number>();
        for (const r of rows) if (r.landed === p && r.sub) n.set(r.sub, (n.get(r.sub) ?? 0) + 1);
        return n.size ? ` (${[...n].map(([k, c]) => `${c} ${k}`).join(', ')})` : '';
      };
      const summary = PHASES.map((p) => `${p}: ${landed[p]}${subs(p)}`).join(', ') + `, before: ${landed.before}, after: ${landed.after}`;
      console.log(`kill -9 torture, ${ROUNDS} rounds, seed ${SEED}, ${((Date.now() - started) / 1000).toFixed(0)} s:\n${table(rows)}\nlanded: ${summary}`);
      for (const p of PHASES) expect(landed[p], `kills landed in ${p} (${summary}; seed ${SEED})`).toBeGreaterThanOrEqual(MIN_PER_PHASE);
    },
  );
});
