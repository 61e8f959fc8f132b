import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { statePaths } from '../../agent/paths.js';
import { writeLinearModel } from '../models/onnx-writer.js';
import { compileProject } from './compiled.js';
import { compareLoads, mergeLoads, runLoad, type LoadResult } from './loadgen.js';
import { agentRun } from './serving-agent.js';
import { measureBinarySpeedup, writeBinaryBenchModel } from './serving-binary.js';
import { benchSpecToServing } from './spec-to-serving.js';
import { medianOfRuns, round } from './stats.js';

// The serving benchmark (issue 10), for the runtime host: every built-in model is a session in
// one process (`modeld host`) that owns the node endpoint.
//  - tinyRatio / p99AddedMs: the node endpoint vs a minimal in-process baseline (a bare node:http
//    server calling the same session code, serving-baseline.ts) for [1,4] FP32 at 8 connections,
//    in alternating slices so both see the same share of a busy machine; [256,4] beside it.
//  - binarySpeedup: [1,3,224,224] FP32 with the binary tensor extension vs JSON (serving-binary.ts).
//  - failedDuringSwitches: 10 blue/green switches inside the host under load.
//  - servingPrivateMiB10 / servingPssMiB10, the agent's RSS/PSS, agentRestartFailed: the real
//    agent process with 10 models (serving-agent.ts).
// Every process measured is apart from the load generator (this process), and runs from the
// project compiled by tsc (compiled.ts), as the release does.

const CONNECTIONS = 8;
const DURATION_MS = 5000;
const WARMUP_MS = 1000;
const SLICES = 5;
const SWITCHES = 10;
const BODY = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
// A batch of 256 rows: the session's work (JSON, tensors) grows, the host's per-request cost does not.
const BATCH_BODY = JSON.stringify({ inputs: [{ name: 'x', shape: [256, 4], datatype: 'FP32', data: Array.from({ length: 1024 }, (_, i) => (i % 97) / 7) }] });
const PATH = '/v2/models/lin/infer';

export const TARGETS = { tinyRatioAtLeast: 0.9, servingPrivateMiB10Under: 60, failedDuringSwitches: 0, agentRestartFailed: 0, binarySpeedupAtLeast: 3 };

/** Which targets the figures meet (pure). */
export function targetsMet(m: { tinyRatio: number; servingPrivateMiB10: number; failedDuringSwitches: number; agentRestartFailed: number; binarySpeedup: number }) {
  return {
    tinyRatio: m.tinyRatio >= TARGETS.tinyRatioAtLeast,
    servingPrivateMiB10: m.servingPrivateMiB10 < TARGETS.servingPrivateMiB10Under,
    failedDuringSwitches: m.failedDuringSwitches === TARGETS.failedDuringSwitches,
    agentRestartFailed: m.agentRestartFailed === TARGETS.agentRestartFailed,
    binarySpeedup: m.binarySpeedup >= TARGETS.binarySpeedupAtLeast,
  };
}

/** A process of this folder's `file`, speaking JSON lines on stdout, run from the compiled project. */
function jsonChild(dist: string, file: string, args: string[]) {
  const child: ChildProcess = spawn(process.execPath, [join(dist, 'scripts/bench', `${file}.js`), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error(`${file} exited`);
    return JSON.parse(r.value) as Record<string, any>;
  };
  const exited = new Promise((r) => child.once('exit', r));
  return { child, next, exited };
}

interface AgentSide {
  endpoint: string;
  send(msg: unknown): Promise<Record<string, any>>;
  close(): Promise<void>;
}

async function startAgentSide(dist: string, stateDir: string): Promise<AgentSide> {
  const c = jsonChild(dist, 'serving-host', [stateDir]);
  const ready = await c.next();
  return {
    endpoint: ready.endpoint,
    async send(msg) {
      c.child.stdin!.write(`${JSON.stringify(msg)}\n`);
      const r = await c.next();
      if (r.type === 'error') throw new Error(r.message);
      return r;
    },
    async close() {
      c.child.stdin!.write('{"cmd":"close"}\n');
      await c.exited;
    },
  };
}

async function startBaseline(dist: string, modelDir: string): Promise<{ origin: string; close(): Promise<void> }> {
  const c = jsonChild(dist, 'serving-baseline', [modelDir, 'lin']);
  const { port } = await c.next();
  return {
    origin: `http://127.0.0.1:${port}`,
    async close() {
      c.child.stdin!.end();
      await c.exited;
    },
  };
}

const figures = (r: LoadResult) => ({ reqPerSec: round(r.reqPerSec, 0), p50Ms: round(r.p50Ms, 3), p99Ms: round(r.p99Ms, 3), failed: r.failed });

async function oneRun(dist: string, log: (s: string) => void) {
  const root = mkdtempSync(join(tmpdir(), 'modeld-bench-serving-'));
  const paths = statePaths(root);
  // Versions unpacked where the installer leaves them.
  writeLinearModel(join(paths.treeDir('bench', 'lin', { version: '1' }), 'model.onnx'), { w: 2, b: 1, dims: 4 });
  writeLinearModel(join(paths.treeDir('bench', 'lin', { version: '2' }), 'model.onnx'), { w: 3, b: -1, dims: 4 });
  writeBinaryBenchModel(paths.treeDir('bench', 'img', { version: '1' }));
  const baseline = await startBaseline(dist, paths.treeDir('bench', 'lin', { version: '1' }));
  const side = await startAgentSide(dist, root);
  try {
    const endpoint = side.endpoint;
    const load = (origin: string, durationMs: number, signal?: AbortSignal, body = BODY) => runLoad({ origin, path: PATH, body, connections: CONNECTIONS, durationMs, signal });
    const compare = async (what: string, body: string) => {
      await load(baseline.origin, WARMUP_MS, undefined, body);
      await load(endpoint, WARMUP_MS, undefined, body);
      const bs: LoadResult[] = [];
      const es: LoadResult[] = [];
      for (let i = 0; i < SLICES; i++) {
        bs.push(await load(baseline.origin, DURATION_MS / SLICES, undefined, body));
        es.push(await load(endpoint, DURATION_MS / SLICES, undefined, body));
      }
      const b = mergeLoads(bs);
      const e = mergeLoads(es);
      const c = compareLoads(b, e);
      log(`  ${what} baseline ${figures(b).reqPerSec} req/s  p50 ${round(b.p50Ms, 3)} ms  p99 ${round(b.p99Ms, 3)} ms`);
      log(`  ${what} endpoint ${figures(e).reqPerSec} req/s  p50 ${round(e.p50Ms, 3)} ms  p99 ${round(e.p99Ms, 3)} ms  (ratio ${round(c.ratio, 3)}, p99 +${round(c.p99AddedMs, 3)} ms)`);
      if (b.failed || e.failed) throw new Error(`failed requests (baseline ${JSON.stringify(b.statuses)}, endpoint ${JSON.stringify(e.statuses)})`);
      return { b, e, c };
    };
    const tiny = await compare('[1,4]  ', BODY);
    const batch = await compare('[256,4]', BATCH_BODY);
    await side.send({ cmd: 'serve', name: 'img', version: '1' });
    const binary = await measureBinarySpeedup(endpoint, 'img', { log });

    // 10 switches under constant load through the node endpoint (blue/green inside the host).
    const ac = new AbortController();
    const underLoad = load(endpoint, 600_000, ac.signal);
    const switchMs: number[] = [];
    for (let k = 0; k < SWITCHES; k++) {
      await sleep(200);
      const r = await side.send({ cmd: 'activate', version: k % 2 === 0 ? '2' : '1' });
      switchMs.push(r.switchMs);
    }
    await sleep(200);
    ac.abort();
    const s = await underLoad;
    log(`  ${SWITCHES} switches under load: ${s.requests} requests, ${s.failed} failed ${s.failed ? JSON.stringify(s.statuses) : ''}`);
    return {
      tinyRatio: round(tiny.c.ratio, 3),
      p99AddedMs: round(tiny.c.p99AddedMs, 3),
      p50AddedMs: round(tiny.c.p50AddedMs, 3),
      baseline: figures(tiny.b),
      endpoint: figures(tiny.e),
      batch256: { ratio: round(batch.c.ratio, 3), p99AddedMs: round(batch.c.p99AddedMs, 3), baseline: figures(batch.b), endpoint: figures(batch.e) },
      binarySpeedup: binary.binarySpeedup,
      binary,
      failedDuringSwitches: s.failed,
      switchesUnderLoad: { switches: SWITCHES, requests: s.requests, failed: s.failed, switchMsMedian: round([...switchMs].sort((x, y) => x - y)[switchMs.length >> 1], 1) },
    };
  } finally {
    await side.close();
    await baseline.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Runs the serving benchmark `runs` times (at least 3) and returns the median of each figure.
 * Human-readable lines go to stdout, or to stderr with `json` (the caller prints the object).
 */
export async function benchServing(opts: { json: boolean; runs: number }): Promise<Record<string, unknown>> {
  const log = (s: string) => (opts.json ? process.stderr : process.stdout).write(`${s}\n`);
  const runs = Math.max(3, Math.floor(opts.runs || 3));
  log(`serving benchmark: ${runs} runs, ${CONNECTIONS} connections, ${DURATION_MS / 1000} s per path in ${SLICES} alternating slices, runtime host vs a bare node:http + onnxruntime baseline, y = x * w + b [1, 4] FP32`);
  const compiled = compileProject(log);
  const results = [];
  try {
    for (let i = 0; i < runs; i++) {
      log(`run ${i + 1}/${runs}`);
      const endpoint = await oneRun(compiled.dist, log);
      const agent = await agentRun(compiled.dist, log);
      results.push({ ...endpoint, ...agent });
    }
  } finally {
    compiled.remove();
  }
  const m = medianOfRuns(results);
  const specToServing = await benchSpecToServing({ switches: 6, log });
  const met = targetsMet(m);
  const { tinyRatio, p99AddedMs, servingPrivateMiB10, servingPssMiB10, agentRssMiB, agentPssMiB, failedDuringSwitches, agentRestartFailed, binarySpeedup, ...rest } = m;
  const out = {
    bench: 'serving',
    runs,
    connections: CONNECTIONS,
    durationMs: DURATION_MS,
    tinyRatio,
    p99AddedMs,
    servingPrivateMiB10,
    servingPssMiB10,
    agentRssMiB,
    agentPssMiB,
    failedDuringSwitches,
    agentRestartFailed,
    binarySpeedup,
    ...rest,
    specToServing,
    targets: TARGETS,
    met,
    // The worst run too: a median of 0 failures must not hide one run with failures.
    maxFailedDuringSwitches: Math.max(...results.map((r) => r.failedDuringSwitches)),
    maxAgentRestartFailed: Math.max(...results.map((r) => r.agentRestartFailed)),
  };
  log(
    `median of ${runs}: tinyRatio ${out.tinyRatio} (target >= 0.9), p99AddedMs ${out.p99AddedMs}, [256,4] ratio ${m.batch256.ratio}, binarySpeedup ${out.binarySpeedup} (target >= 3), ` +
      `servingPrivateMiB10 ${out.servingPrivateMiB10} (target < 60), servingPssMiB10 ${out.servingPssMiB10}, agent RSS ${out.agentRssMiB} / PSS ${out.agentPssMiB} MiB, ` +
      `failedDuringSwitches ${out.failedDuringSwitches} (worst ${out.maxFailedDuringSwitches}), agentRestartFailed ${out.agentRestartFailed} (worst ${out.maxAgentRestartFailed})`,
  );
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const json = process.argv.includes('--json');
  const runsArg = process.argv.indexOf('--runs');
  const r = await benchServing({ json, runs: runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3 });
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}
