import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { packDir } from '../helpers/archives.js';
import { E2E_NODE, useE2e } from '../helpers/e2e-agent.js';
import { faultObject, faultSeed, startFaultServer } from '../helpers/fault-server.js';
import { writeLinearModel } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

// The broker goes away while deliveries and statuses are in flight: stopped (by pid) in the
// middle of a download, and again in the middle of the burst that empties the outbox once it is
// back. The serving agent as a real child process, a persistent mosquitto and a cloud with a
// persistent session: every status arrives, first arrivals in the order the agent made them,
// every model ends Serving, and the daemon lives on.

const NODE = E2E_NODE;
const MODELS = 20;
const PHASES = new Set(['Pending', 'Downloading', 'Verifying', 'Installing', 'Installed', 'Starting', 'Serving', 'Failed', 'Deleting', 'Deleted']);

const e2e = useE2e({ prefix: 'e2e-broker-', broker: { persistence: true }, cloud: { persistent: true } });

function agent(): Promise<AgentProcess> {
  const config = e2e.config({
    serving: { startTimeoutMs: 60_000, drainTimeoutMs: 1000, stopGraceMs: 2000 },
    fetch: { progressIntervalMs: 100, backoffBaseMs: 50, backoffMaxMs: 500, stallTimeoutMs: 60_000 },
  });
  return e2e.startAgent(config);
}

/** model.onnx (y = 2x + 1) and 8 MiB of incompressible padding: a download that takes a while. */
async function modelArchive() {
  const src = join(e2e.work, 'src');
  mkdirSync(src, { recursive: true });
  writeLinearModel(join(src, 'model.onnx'), { w: 2, b: 1 });
  writeFileSync(join(src, 'pad.bin'), randomBytes(8 * 1024 * 1024));
  const body = readFileSync(await packDir(src, join(e2e.work, 'model.tar.gz'), { gzip: true }));
  return faultObject(body, '"model-1"');
}

const content = (name: string, generation: number, url: string, sha256: string): ModelContent => ({
  metadata: { name, namespace: 'default', uid: `uid-${name}`, generation },
  spec: { modelName: name, deployToLayer: 'edge', frameworkType: 'onnx', manifest: [{ version: '1', downloadURL: url, sha256sum: sha256 }], targetVersion: '1' },
});

async function infer(name: string, x: number): Promise<number | undefined> {
  const r = await e2e.infer(name, x);
  return r.status === 200 ? r.y : undefined;
}

/** Reads the agent's own state (WAL: a reader beside the running agent is fine). */
function readState<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(join(e2e.stateDir, 'state.db'), { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

const outboxDepth = () => (existsSync(join(e2e.stateDir, 'state.db')) ? readState((db) => (db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n) : 0);

/** The phase statuses the agent made (its event history, which records each one as it is made), in order. */
const madeStatuses = () =>
  readState((db) => (db.prepare('SELECT name, kind FROM events WHERE namespace = ? ORDER BY id').all('default') as Array<{ name: string; kind: string }>))
    .filter((e) => PHASES.has(e.kind))
    .map((e) => `${e.name}:${e.kind}`);

/** Statuses as the cloud first saw them (duplicates, allowed by at-least-once, dropped by msg_id). */
function firstArrivals(): StatusContent[] {
  const seen = new Set<string>();
  return e2e.cloud.statuses.filter((_, i) => !seen.has(e2e.cloud.headers[i].msg_id) && !!seen.add(e2e.cloud.headers[i].msg_id));
}

const isProgress = (s: StatusContent) => s.phase === 'Downloading' && s.progress !== undefined;
const names = Array.from({ length: MODELS }, (_, i) => `m${String(i).padStart(2, '0')}`);

describe('broker restarts end to end', { timeout: 300_000 }, () => {
  it('delivers every status, in order, through broker restarts mid-download and mid-status-burst; every model ends Serving', async () => {
    const obj = await modelArchive();
    const server = e2e.track(await startFaultServer({ objects: [obj], seed: faultSeed() }));
    // Paced at ~3 MiB/s: the download is under way for a few seconds.
    server.fallback = { kind: 'trickle', in: 'body', bytes: 64 * 1024, everyMs: 20 };
    const a = await agent();
    const exited = a.exited.then((code) => {
      throw new Error(`the agent exited (code ${code}); stderr:\n${a.stderr()}`);
    });
    const race = <T>(p: Promise<T>) => Promise.race([p, exited]);

    for (const name of names) await e2e.cloud.update(NODE, content(name, 1, server.url, obj.sha256));
    // Mid-download, with statuses flowing: every model is Downloading and bytes are coming in.
    await race(waitFor(() => names.every((n) => e2e.cloud.statuses.some((s) => s.name === n && s.phase === 'Downloading')), 60_000, 'every model Downloading'));
    await race(e2e.cloud.waitStatus((s) => isProgress(s) && (s.progress?.bytes ?? 0) >= 1024 * 1024, { what: '1 MiB downloaded' }));
    await e2e.broker.stop();
    expect(server.bytesSent(), 'the broker went down mid-download').toBeLessThan(obj.body.length);

    // Offline, the agent finishes the work and serves every model; its statuses wait in the outbox.
    await race(waitFor(async () => (await Promise.all(names.map((n) => infer(n, 10)))).every((y) => y === 21), 120_000, 'every model serving with no broker'));
    const queued = outboxDepth();
    expect(queued).toBeGreaterThan(32); // more than one publish window: a burst

    // Back, and gone again (SIGTERM, by pid) as the first status of the burst that empties the
    // outbox reaches the e2e.cloud. Not SIGSTOP to pin the instant: mosquitto 2.0.11 frozen, then
    // stopped, loses what it had queued for connected clients, acked or not.
    const arrivedBefore = firstArrivals().length;
    const seenBefore = new Set(e2e.cloud.headers.map((h) => h.msg_id));
    let stopping: Promise<void> | undefined;
    // The first status of the burst that is new to the cloud: a resent one (at least once: its
    // PUBACK was lost in the first outage) says nothing about where the burst is.
    const onMessage = (_topic: string, payload: Buffer) => {
      if (stopping || !payload.includes('"operation":"status"')) return;
      const id = (JSON.parse(payload.toString()) as { header?: { msg_id?: string } }).header?.msg_id;
      if (id === undefined || seenBefore.has(id)) return;
      stopping = e2e.broker.stop();
    };
    e2e.cloud.client.on('message', onMessage);
    await e2e.broker.start();
    await race(waitFor(() => stopping !== undefined, 30_000, 'the first status of the burst'));
    await stopping;
    e2e.cloud.client.off('message', onMessage);
    const arrivedMid = firstArrivals().length - arrivedBefore;
    const midBurst = `the broker went down mid-burst (${arrivedMid} of ${queued} queued statuses had arrived)`;
    expect(arrivedMid, midBurst).toBeGreaterThan(0);
    expect(arrivedMid, midBurst).toBeLessThan(queued);

    await e2e.broker.start();
    await race(waitFor(() => names.every((n) => firstArrivals().some((s) => s.name === n && s.phase === 'Serving')), 60_000, 'every Serving status at the cloud'));
    await race(waitFor(() => outboxDepth() === 0, 30_000, 'the outbox to empty'));

    // Every phase status the agent made arrived, first arrivals in the order it made them...
    const made = madeStatuses();
    const arrived = firstArrivals();
    expect(arrived.filter((s) => !isProgress(s)).map((s) => `${s.name}:${s.phase}`)).toEqual(made);
    // ...and progress among them in order too (each status is stamped when made).
    const times = arrived.map((s) => Date.parse(s.time!));
    expect(times.every((t, i) => i === 0 || t >= times[i - 1])).toBe(true);
    for (const n of names) expect(arrived.filter((s) => s.name === n && !isProgress(s)).at(-1)?.phase, n).toBe('Serving');

    // Alive and still doing its job: it serves, and a new model is delivered and served.
    expect(a.child.exitCode).toBeNull();
    await e2e.cloud.update(NODE, content('after', 1, server.url, obj.sha256));
    await race(e2e.cloud.waitStatus((s) => s.name === 'after' && s.phase === 'Serving', { what: 'a new model serving', timeoutMs: 60_000 }));
    expect(await infer('after', 1)).toBe(3);
    expect(await infer(names[0], 1)).toBe(3);
  });
});
