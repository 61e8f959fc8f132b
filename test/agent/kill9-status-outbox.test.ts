import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

// Found by the kill -9 torture (torture-kill9.test.ts, seed 600453803, round 5: a kill aimed at
// the switch landed just after the agent logged Installed; after the restart Installed was never
// reported). The reporter writes a status in separate commits — the models row (phase,
// observedGeneration), then the event history, then the outbox — so a kill -9 between the first
// and the last leaves a row that says "Installed, generation g" with no status in the outbox. On
// restart the runner's settle() sees that row, takes it for reported, and stays silent: the
// InferenceModel's status is stuck at the phase before (Installing, Pending) for that generation.
// Only a controller that sends the spec again (its sync after the agent's hello) heals it, so this
// cloud deliberately does not answer hellos: the agent must deliver its own statuses (Guarantee 7).
//
// The kill is aimed at that stretch (a few ms: an fsync'd commit of the event history in between):
// a same-version spec with a new generation makes the agent report Pending then Installed at once;
// each attempt kills it a few ms after Pending (or as Installed is logged), then restarts it and
// waits for Installed of that generation.

const NODE = 'edge-1';
const ATTEMPTS = 32;

let work: string;
let broker: Broker;
let cloud: Cloud;
let server: ChaosServer;
const agents: AgentProcess[] = [];
const stateDir = () => join(work, 'state');

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'kill9-status-'));
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
  await makeTree(join(work, 'src'), { 'version.txt': '1\n', 'weights/w.bin': 'w' });
  server = await startChaosServer({ body: readFileSync(await packDir(join(work, 'src'), join(work, 'v1.tar.gz'), { gzip: true })) });
});

afterEach(async () => {
  for (const a of agents) await a.end();
  agents.length = 0;
  await cloud.close();
  await server.stop();
  await broker.close();
  rmSync(work, { recursive: true, force: true });
});

async function startAgent(): Promise<{ a: AgentProcess; closed: Promise<unknown> }> {
  const hellos = cloud.hellos.length;
  const a = startAgentProcess(
    { node: { name: NODE, labels: { zone: 'a' } }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir: stateDir(), log: { level: 'debug' } },
    ['--no-serve'],
  );
  agents.push(a);
  const closed = once(a.child, 'close');
  await waitFor(() => cloud.hellos.length > hellos, 120_000, 'the agent to say hello');
  return { a, closed };
}

const content = (generation: number): ModelContent => ({
  metadata: { name: 'resnet', namespace: 'default', uid: 'uid-resnet', generation },
  spec: {
    modelName: 'resnet',
    deployToLayer: 'edge',
    nodeSelector: { zone: 'a' },
    manifest: [{ version: '1', downloadURL: server.urlFor('/1.tar.gz'), sha256sum: server.sha256 }],
    targetVersion: '1',
  },
});

/** What the dead agent left: its models row, and the phases of the statuses for `generation` still in its outbox. */
function leftBehind(generation: number): { phase: string; generation: number; outbox: string[] } {
  const db = new Database(join(stateDir(), 'state.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT phase, observed_generation AS g FROM models WHERE namespace = 'default' AND name = 'resnet'").get() as { phase: string; g: number };
    const outbox = (db.prepare('SELECT payload FROM outbox ORDER BY seq').all() as Array<{ payload: string }>)
      .map((r) => JSON.parse(r.payload).content as { observedGeneration?: number; phase?: string })
      .filter((c) => c.observedGeneration === generation)
      .map((c) => String(c.phase));
    return { phase: row.phase, generation: row.g, outbox };
  } finally {
    db.close();
  }
}

describe('status across kill -9', { timeout: 300_000 + ATTEMPTS * 60_000 }, () => {
  it('reports Installed after a restart when a kill -9 landed between recording the phase and enqueueing its status (torture seed 600453803, round 5)', async () => {
    let ag = await startAgent();
    await cloud.update(NODE, content(1));
    await cloud.waitStatus((s) => s.phase === 'Installed' && s.observedGeneration === 1, { what: 'version 1 installed', timeoutMs: 120_000 });

    const lost: string[] = [];
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const generation = attempt + 1;
      const cursor = ag.a.logs.length;
      const { a, closed } = ag;
      // The deliberate kill delay: 1-12 ms after Pending is logged, or (every third attempt) as Installed is.
      const delayMs = attempt % 3 === 0 ? -1 : 1 + ((attempt * 5) % 12);
      let fired = false;
      const onData = () => {
        if (fired) return;
        const fresh = a.logs.slice(cursor);
        if (delayMs < 0 && fresh.some((l) => l.phase === 'Installed')) {
          fired = true;
          a.child.kill('SIGKILL');
        } else if (delayMs >= 0 && fresh.some((l) => l.phase === 'Pending' || l.phase === 'Installed')) {
          fired = true;
          setTimeout(() => a.child.kill('SIGKILL'), delayMs);
        }
      };
      a.child.stdout!.on('data', onData);
      await cloud.update(NODE, content(generation));
      await waitFor(() => fired, 60_000, 'the kill trigger');
      await closed;

      const left = leftBehind(generation);
      const recordedNotQueued = left.phase === 'Installed' && left.generation === generation && !left.outbox.includes('Installed');
      ag = await startAgent();
      const reported = await cloud
        .waitStatus((s) => s.phase === 'Installed' && s.observedGeneration === generation, { what: `Installed for generation ${generation}`, timeoutMs: 30_000 })
        .then(() => true, () => false);
      const how = delayMs < 0 ? 'as Installed was logged' : `${delayMs} ms after Pending`;
      if (!reported) {
        lost.push(`attempt ${attempt} (killed ${how}): the row says ${left.phase} for generation ${left.generation}, outbox for it: [${left.outbox.join(', ')}]${recordedNotQueued ? ' — recorded, never queued' : ''}`);
        break; // one is enough to show it; the rest would only take longer
      }
    }
    expect(lost, 'statuses lost across kill -9 (each an Installed the restarted agent never reported)').toEqual([]);
  });
});
