import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelContent } from '../../shared/index.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { E2E_NODE, useE2e } from '../helpers/e2e-agent.js';
import { waitFor } from '../helpers/wait.js';

// Node-wide limits with the agent as a real child process: many models delivered at once share
// the node's download slots and its one bandwidth budget (not one each).

const e2e = useE2e({ prefix: 'e2e-limits-', gateway: false });

const NODE = E2E_NODE;

/**
 * A real HTTP server for several archives (one per path) that counts the responses in flight:
 * from the request's arrival to the end of its response. `trickle` spreads each body over time
 * (a chunk every `trickle` ms), so that downloads started together surely overlap.
 */
interface ArchiveServer {
  url(path: string): string;
  inFlight: number;
  maxInFlight: number;
  requests: string[];
  stop(): Promise<void>;
}

async function startArchiveServer(bodies: Map<string, Buffer>, opts: { trickleMs?: number } = {}): Promise<ArchiveServer> {
  const state: ArchiveServer = { url: () => '', inFlight: 0, maxInFlight: 0, requests: [], stop: async () => {} };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    state.requests.push(`${req.method} ${path} ${req.headers.range ?? ''}`);
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    let counted = true;
    const done = () => {
      if (counted) state.inFlight--;
      counted = false;
    };
    res.on('close', done);
    const body = bodies.get(path);
    if (!body) return void res.writeHead(404).end();
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    res.writeHead(start ? 206 : 200, {
      'content-length': String(body.length - start),
      'accept-ranges': 'bytes',
      etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`,
      ...(start ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (req.method === 'HEAD') return void res.end();
    const CHUNK = 64 * 1024;
    let pos = start;
    const next = () => {
      if (res.destroyed) return;
      if (pos >= body.length) return void res.end();
      const slice = body.subarray(pos, Math.min(body.length, pos + CHUNK));
      pos += slice.length;
      const ok = res.write(slice);
      if (opts.trickleMs) setTimeout(next, opts.trickleMs);
      else if (ok) setImmediate(next);
      else res.once('drain', next);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  state.url = (path) => `http://127.0.0.1:${port}${path}`;
  state.stop = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  e2e.track(state);
  return state;
}

/** A .tar.gz of one incompressible file of `bytes`, so the archive is about that big. */
async function archive(name: string, bytes: number): Promise<{ body: Buffer; sha256: string }> {
  const src = join(e2e.work, `src-${name}`);
  await makeTree(src, { 'weights.bin': randomBytes(bytes), 'name.txt': name });
  const body = readFileSync(await packDir(src, join(e2e.work, `${name}.tar.gz`), { gzip: true }));
  return { body, sha256: createHash('sha256').update(body).digest('hex') };
}

const content = (name: string, url: string, sha256: string): ModelContent => ({
  metadata: { name, namespace: 'default', uid: `uid-${name}`, generation: 1 },
  spec: { modelName: name, deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: url, sha256sum: sha256 }], targetVersion: '1' },
});

function agent(extra: Record<string, unknown>): Promise<AgentProcess> {
  const config = e2e.config({ node: { name: NODE }, admin: undefined, fetch: undefined, log: { level: 'debug' }, ...extra });
  return e2e.startAgent(config, ['--no-serve']);
}

/** Each named model's first status in `phase`, waited for. */
const allReach = (names: string[], phase: string, timeoutMs = 90_000) =>
  waitFor(() => names.every((n) => e2e.cloud.statuses.some((s) => s.name === n && s.phase === phase)), timeoutMs, `${names.join(', ')} ${phase}`).catch((err: Error) => {
    const last = names.map((n) => `${n}: ${e2e.cloud.statuses.filter((s) => s.name === n).at(-1)?.phase ?? '-'}`).join('; ');
    throw new Error(`${err.message} (last: ${last})`);
  });

describe('node-wide limits end to end', { timeout: 240_000 }, () => {
  it('five models delivered at once never have more than limits.fetches downloads in flight, and all end Installed', async () => {
    const names = ['m1', 'm2', 'm3', 'm4', 'm5'];
    const archives = await Promise.all(names.map((n) => archive(n, 1024 * 1024)));
    // 64 KiB every 40 ms: each 1 MiB download takes about 0.6 s however fast the machine is.
    const server = await startArchiveServer(new Map(names.map((n, i) => [`/${n}.tar.gz`, archives[i].body])), { trickleMs: 40 });
    await agent({ limits: { fetches: 2 }, fetch: { progressIntervalMs: 100 } });

    await e2e.cloud.sync(
      NODE,
      names.map((n, i) => content(n, server.url(`/${n}.tar.gz`), archives[i].sha256)),
    );
    await allReach(names, 'Installed');

    expect(server.maxInFlight).toBeLessThanOrEqual(2);
    expect(server.maxInFlight).toBe(2); // the slots are used, not one download after the other
    // A model kept out by the limit says so while it waits.
    const waiting = e2e.cloud.statuses.filter((s) => s.phase === 'Downloading' && s.reason === 'WaitingForSlot' && /waiting for a download slot \(2 of 2 in use/.test(s.message ?? ''));
    expect(waiting.length).toBeGreaterThan(0);
  });

  it('two downloads at once share the one node budget fetch.bandwidth (not one budget each)', async () => {
    const MiB = 1024 * 1024;
    const a = await archive('a', 4 * MiB);
    const b = await archive('b', 4 * MiB);
    const server = await startArchiveServer(
      new Map([
        ['/a.tar.gz', a.body],
        ['/b.tar.gz', b.body],
      ]),
    );
    await agent({ limits: { fetches: 2 }, fetch: { bandwidth: '2MiB', progressIntervalMs: 100 } });

    const t0 = Date.now();
    await e2e.cloud.sync(NODE, [content('a', server.url('/a.tar.gz'), a.sha256), content('b', server.url('/b.tar.gz'), b.sha256)]);
    await allReach(['a', 'b'], 'Installed');
    const elapsed = Date.now() - t0;

    // They did download at the same time: each made progress while the other was under way.
    // (Seen from the agent: the server's own count says little here, as the kernel's socket
    // buffers take a whole 4 MiB body at once.)
    const progress = (name: string) => e2e.cloud.statuses.flatMap((s, i) => (s.name === name && s.phase === 'Downloading' && s.progress && s.progress.bytes > 0 && s.progress.bytes < (s.progress.totalBytes ?? Infinity) ? [i] : []));
    const [pa, pb] = [progress('a'), progress('b')];
    expect(pa.length).toBeGreaterThan(0);
    expect(pb.length).toBeGreaterThan(0);
    expect(pa[0] < pb.at(-1)! && pb[0] < pa.at(-1)!).toBe(true);
    // 8 MiB at 2 MiB/s for the node: about 4 s (a 256 KiB burst aside). One 2 MiB/s budget per
    // download would take about 2 s. Only a lower bound: a loaded machine is slower, never faster.
    expect(elapsed).toBeGreaterThanOrEqual(3200);
  });
});
