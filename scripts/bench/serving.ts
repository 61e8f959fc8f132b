import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { statePaths } from '../../agent/paths.js';
import { writeLinearModel } from '../models/onnx-writer.js';
import { mergeLoads, runLoad, type LoadResult } from './loadgen.js';
import { measureBinarySpeedup, writeBinaryBenchModel } from './serving-binary.js';
import { benchSpecToServing } from './spec-to-serving.js';
import { medianOfRuns, round } from './stats.js';

// The serving benchmark (issue 3): through the gateway vs directly to the instance at the same
// concurrency, failed requests during 10 switches under load, and the time from activate() to the
// new version taking traffic with the runtime's own start time apart. The agent side runs in its
// own process (serving-host.ts) so the load generator does not share its event loop.

const CONNECTIONS = 8;
const DURATION_MS = 5000;
const WARMUP_MS = 1000;
const SLICES = 5;
const SWITCHES = 10;
const BODY = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
// A batch of 256 rows: the instance's work (JSON, tensors) grows, the gateway's per-request cost does not.
const BATCH_BODY = JSON.stringify({ inputs: [{ name: 'x', shape: [256, 4], datatype: 'FP32', data: Array.from({ length: 1024 }, (_, i) => (i % 97) / 7) }] });
const PATH = '/v2/models/lin/infer';

interface Host {
  gateway: string;
  instancePort: number;
  send(msg: unknown): Promise<Record<string, any>>;
  close(): Promise<void>;
}

async function startHost(stateDir: string): Promise<Host> {
  const here = fileURLToPath(import.meta.url);
  const argv = here.endsWith('.ts')
    ? [process.execPath, '--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href, join(here, '..', 'serving-host.ts'), stateDir]
    : [process.execPath, join(here, '..', 'serving-host.js'), stateDir];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('serving host exited');
    return JSON.parse(r.value) as Record<string, any>;
  };
  const ready = await next();
  return {
    gateway: ready.gateway,
    instancePort: ready.instancePort,
    async send(msg) {
      child.stdin!.write(`${JSON.stringify(msg)}\n`);
      const r = await next();
      if (r.type === 'error') throw new Error(r.message);
      return r;
    },
    async close() {
      child.stdin!.write('{"cmd":"close"}\n');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

const figures = (r: LoadResult) => ({ reqPerSec: round(r.reqPerSec, 0), p50Ms: round(r.p50Ms, 3), p99Ms: round(r.p99Ms, 3), failed: r.failed });

async function oneRun(log: (s: string) => void) {
  const root = mkdtempSync(join(tmpdir(), 'modeld-bench-serving-'));
  const paths = statePaths(root);
  // The archive "already in the store": versions unpacked where the installer leaves them.
  writeLinearModel(join(paths.treeDir('bench', 'lin', { version: '1' }), 'model.onnx'), { w: 2, b: 1, dims: 4 });
  writeLinearModel(join(paths.treeDir('bench', 'lin', { version: '2' }), 'model.onnx'), { w: 3, b: -1, dims: 4 });
  writeBinaryBenchModel(paths.treeDir('bench', 'img', { version: '1' }));
  const host = await startHost(root);
  try {
    let direct = `http://127.0.0.1:${host.instancePort}`;
    const load = (origin: string, durationMs: number, signal?: AbortSignal, body = BODY) => runLoad({ origin, path: PATH, body, connections: CONNECTIONS, durationMs, signal });
    const compare = async (what: string, body: string) => {
      await load(direct, WARMUP_MS, undefined, body);
      await load(host.gateway, WARMUP_MS, undefined, body);
      // Alternating slices, so both paths see the same share of a busy machine.
      const ds: LoadResult[] = [];
      const gs: LoadResult[] = [];
      for (let i = 0; i < SLICES; i++) {
        ds.push(await load(direct, DURATION_MS / SLICES, undefined, body));
        gs.push(await load(host.gateway, DURATION_MS / SLICES, undefined, body));
      }
      const d = mergeLoads(ds);
      const g = mergeLoads(gs);
      log(`  ${what} direct  ${figures(d).reqPerSec} req/s  p50 ${round(d.p50Ms, 3)} ms  p99 ${round(d.p99Ms, 3)} ms`);
      log(`  ${what} gateway ${figures(g).reqPerSec} req/s  p50 ${round(g.p50Ms, 3)} ms  p99 ${round(g.p99Ms, 3)} ms  (ratio ${round(g.reqPerSec / d.reqPerSec, 3)})`);
      return { d, g };
    };
    const { d, g } = await compare('[1,4]  ', BODY);
    const batch = await compare('[256,4]', BATCH_BODY);
    // binarySpeedup: [1,3,224,224] FP32 with the binary tensor data extension vs JSON, through the node endpoint.
    await host.send({ cmd: 'serve', name: 'img', version: '1' });
    const binary = await measureBinarySpeedup(host.gateway, 'img', { log });

    // 10 switches under constant load through the gateway.
    const ac = new AbortController();
    const underLoad = load(host.gateway, 600_000, ac.signal);
    const switchMs: number[] = [];
    for (let k = 0; k < SWITCHES; k++) {
      await new Promise((r) => setTimeout(r, 200));
      const r = await host.send({ cmd: 'activate', version: k % 2 === 0 ? '2' : '1' });
      switchMs.push(r.switchMs);
    }
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    const s = await underLoad;
    log(`  ${SWITCHES} switches under load: ${s.requests} requests, ${s.failed} failed ${s.failed ? JSON.stringify(s.statuses) : ''}`);

    // Activation with no load: activate() to the new version taking traffic, runtime start apart.
    const a = await host.send({ cmd: 'activate', version: '2' });
    direct = `http://127.0.0.1:${a.instancePort}`;
    log(`  activate: new version serving after ${round(a.switchMs, 1)} ms (runtime's own start ${round(a.runtimeStartMs, 1)} ms, overhead ${round(a.switchMs - a.runtimeStartMs, 1)} ms); activate() returned after ${round(a.activateMs, 1)} ms with the old one drained and stopped`);
    return {
      direct: figures(d),
      gateway: figures(g),
      ratio: round(g.reqPerSec / d.reqPerSec, 3),
      p99AddedMs: round(g.p99Ms - d.p99Ms, 3),
      p50AddedMs: round(g.p50Ms - d.p50Ms, 3),
      binarySpeedup: binary.binarySpeedup,
      binary,
      batch256: {
        direct: figures(batch.d),
        gateway: figures(batch.g),
        ratio: round(batch.g.reqPerSec / batch.d.reqPerSec, 3),
        p99AddedMs: round(batch.g.p99Ms - batch.d.p99Ms, 3),
        p50AddedMs: round(batch.g.p50Ms - batch.d.p50Ms, 3),
      },
      switchesUnderLoad: { switches: SWITCHES, requests: s.requests, failed: s.failed, switchMsMedian: round([...switchMs].sort((x, y) => x - y)[switchMs.length >> 1], 1) },
      activation: {
        switchMs: round(a.switchMs, 1),
        runtimeStartMs: round(a.runtimeStartMs, 1),
        overheadMs: round(a.switchMs - a.runtimeStartMs, 1),
        activateReturnMs: round(a.activateMs, 1),
      },
    };
  } finally {
    await host.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Runs the serving benchmark `runs` times and returns the median of each figure. Human-readable
 * lines go to stdout, or to stderr with `json` (the caller prints the returned object as JSON).
 */
export async function benchServing(opts: { json: boolean; runs: number }): Promise<Record<string, unknown>> {
  const log = (s: string) => (opts.json ? process.stderr : process.stdout).write(`${s}\n`);
  const runs = Math.max(1, Math.floor(opts.runs || 1));
  log(`serving benchmark: ${runs} run(s), ${CONNECTIONS} connections, ${DURATION_MS / 1000} s per path in ${SLICES} alternating slices, built-in onnx runtime, y = x * w + b [1, 4] FP32`);
  const results = [];
  for (let i = 0; i < runs; i++) {
    log(`run ${i + 1}/${runs}`);
    results.push(await oneRun(log));
  }
  const m = medianOfRuns(results);
  const specToServing = await benchSpecToServing({ switches: 6, log });
  const out = {
    bench: 'serving',
    runs,
    connections: CONNECTIONS,
    durationMs: DURATION_MS,
    ...m,
    specToServing,
    targets: { ratioAtLeast: 0.85, p99AddedUnderMs: 1, failedDuringSwitches: 0, overheadUnderMs: 1000, binarySpeedupAtLeast: 3 },
    met: {
      binarySpeedup: m.binarySpeedup >= 3,
      ratio: m.ratio >= 0.85,
      p99Added: m.p99AddedMs < 1,
      failedDuringSwitches: m.switchesUnderLoad.failed === 0,
      overhead: m.activation.overheadMs < 1000,
      specToServing: specToServing.beyondRuntimeMs < 1000,
    },
  };
  log(
    `median of ${runs}: gateway/direct ${out.ratio} for [1,4] and ${m.batch256.ratio} for [256,4] (target >= 0.85), p99 added ${out.p99AddedMs} / ${m.batch256.p99AddedMs} ms (target < 1), ` +
      `failed during ${SWITCHES} switches ${m.switchesUnderLoad.failed} (target 0), activation overhead ${m.activation.overheadMs} ms beyond the runtime's ${m.activation.runtimeStartMs} ms start (target < 1000)`,
  );
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const json = process.argv.includes('--json');
  const runsArg = process.argv.indexOf('--runs');
  const r = await benchServing({ json, runs: runsArg > 0 ? Number(process.argv[runsArg + 1]) : 1 });
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
}
