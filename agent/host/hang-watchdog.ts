import { Worker } from 'node:worker_threads';

// onnxruntime-node runs a session synchronously on the calling thread (its run() is a setImmediate
// around the native call), and a run cannot be cancelled. So a hung run blocks the whole host, and
// nothing on its event loop can notice. A worker thread can: the main thread stamps a heartbeat
// into shared memory every 100 ms; when it is older than serving.sessionHangMs the worker writes
// what was running to the hang file and SIGKILLs the process. Its supervisor (systemd, or the
// agent) starts it again, and the new host restores every model from its route table.
//
// begin/end run on every request, so they only bump a counter in shared memory (one slot per
// model, its name written once); the worker turns the counters into names when it fires.

/** Models with a slot of their own; more share the last one. */
const SLOTS = 512;
const NAMES_BYTES = 32 * 1024;
const COUNTS_AT = 16;
const NAMES_AT = COUNTS_AT + 8 * SLOTS;

const WORKER = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { sab, slots, countsAt, namesAt, namesBytes } = workerData;
const beat = new Float64Array(sab, 0, 1);
const namesLen = new Int32Array(sab, 8, 1);
const counts = new Int32Array(sab, countsAt, 2 * slots);
const names = new Uint8Array(sab, namesAt, namesBytes);
setInterval(() => {
  const at = beat[0];
  const blocked = Date.now() - at;
  if (at > 0 && blocked > workerData.hangMs) {
    let what = {};
    try {
      const list = Buffer.from(names.slice(0, namesLen[0])).toString('utf8').split('\\n');
      const busy = (base) => list.filter((_, i) => i < slots && counts[base + i] > 0);
      const loads = busy(0);
      const runs = busy(slots);
      what = { ...(loads.length ? { phase: 'load', model: loads[0] } : runs.length ? { phase: 'run', model: runs[0] } : {}), models: [...loads, ...runs] };
    } catch {}
    try { fs.writeFileSync(workerData.hangFile, JSON.stringify({ at: new Date().toISOString(), blockedMs: Math.round(blocked), ...what })); } catch {}
    process.kill(process.pid, 'SIGKILL');
  }
}, Math.max(20, Math.min(250, workerData.hangMs / 4)));
`;

export interface HangWatchdog {
  /** A load or run of `model` begins; the hang file names every model with one under way. */
  begin(model: string, phase: 'load' | 'run'): void;
  end(model: string, phase: 'load' | 'run'): void;
  stop(): Promise<void>;
}

export function startHangWatchdog(opts: { hangMs: number; hangFile: string; onError?: (err: Error) => void }): HangWatchdog {
  const sab = new SharedArrayBuffer(NAMES_AT + NAMES_BYTES);
  const beat = new Float64Array(sab, 0, 1);
  const namesLen = new Int32Array(sab, 8, 1);
  const counts = new Int32Array(sab, COUNTS_AT, 2 * SLOTS);
  const names = new Uint8Array(sab, NAMES_AT, NAMES_BYTES);
  beat[0] = Date.now();
  const timer = setInterval(() => (beat[0] = Date.now()), 100);
  timer.unref();
  // Small heaps: the worker only reads shared memory and writes one file (a few MiB less,
  // measured; 4 MiB of old generation is too little for a Node worker to start).
  const resourceLimits = { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1, codeRangeSizeMb: 2, stackSizeMb: 1 };
  const worker = new Worker(WORKER, { eval: true, resourceLimits, workerData: { sab, slots: SLOTS, countsAt: COUNTS_AT, namesAt: NAMES_AT, namesBytes: NAMES_BYTES, hangMs: opts.hangMs, hangFile: opts.hangFile } });
  worker.unref();
  // A watchdog that died guards nothing: said loudly (the agent's probes still catch a dead host).
  worker.on('error', (err) => opts.onError?.(err));
  const slotOf = new Map<string, number>();
  const slot = (model: string): number => {
    let i = slotOf.get(model);
    if (i !== undefined) return i;
    i = Math.min(slotOf.size, SLOTS - 1);
    slotOf.set(model, i);
    if (i < SLOTS - 1 || slotOf.size === SLOTS) {
      const list = [...slotOf.keys()].slice(0, SLOTS - 1);
      if (slotOf.size >= SLOTS) list.push('(other models)');
      const b = Buffer.from(list.join('\n'), 'utf8').subarray(0, NAMES_BYTES);
      names.set(b);
      namesLen[0] = b.length;
    }
    return i;
  };
  return {
    begin(model, phase) {
      counts[(phase === 'load' ? 0 : SLOTS) + slot(model)]++;
    },
    end(model, phase) {
      const k = (phase === 'load' ? 0 : SLOTS) + slot(model);
      if (counts[k] > 0) counts[k]--;
    },
    async stop() {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}
