import { Worker } from 'node:worker_threads';

// onnxruntime-node runs a session synchronously on the calling thread (its run() is a setImmediate
// around the native call), and a run cannot be cancelled. So a hung run blocks the whole host, and
// nothing on its event loop can notice. A worker thread can: the main thread stamps a heartbeat
// into shared memory every 100 ms; when it is older than serving.sessionHangMs the worker writes
// what was running to the hang file and SIGKILLs the process. Its supervisor (systemd, or the
// agent) starts it again, and the new host restores every model from its route table.

const WORKER = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const beat = new Float64Array(workerData.sab, 0, 1);
const len = new Int32Array(workerData.sab, 8, 1);
const text = new Uint8Array(workerData.sab, 12, 500);
setInterval(() => {
  const at = beat[0];
  const blocked = Date.now() - at;
  if (at > 0 && blocked > workerData.hangMs) {
    let what = {};
    try { what = JSON.parse(Buffer.from(text.slice(0, len[0])).toString('utf8')); } catch {}
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

export function startHangWatchdog(opts: { hangMs: number; hangFile: string }): HangWatchdog {
  const sab = new SharedArrayBuffer(512);
  const beat = new Float64Array(sab, 0, 1);
  const len = new Int32Array(sab, 8, 1);
  const text = new Uint8Array(sab, 12, 500);
  beat[0] = Date.now();
  const timer = setInterval(() => (beat[0] = Date.now()), 100);
  timer.unref();
  const worker = new Worker(WORKER, { eval: true, workerData: { sab, hangMs: opts.hangMs, hangFile: opts.hangFile } });
  worker.unref();
  const busy = new Map<string, number>();
  const write = () => {
    const models = [...busy.keys()];
    const loads = models.filter((k) => k.startsWith('load:')).map((k) => k.slice(5));
    const runs = models.filter((k) => k.startsWith('run:')).map((k) => k.slice(4));
    const b = Buffer.from(JSON.stringify({ ...(loads.length ? { phase: 'load', model: loads[0] } : runs.length ? { phase: 'run', model: runs[0] } : {}), models: [...loads, ...runs] }), 'utf8').subarray(0, 500);
    text.set(b);
    len[0] = b.length;
  };
  return {
    begin(model, phase) {
      const k = `${phase}:${model}`;
      const n = busy.get(k) ?? 0;
      busy.set(k, n + 1);
      if (n === 0) write();
    },
    end(model, phase) {
      const k = `${phase}:${model}`;
      const n = (busy.get(k) ?? 1) - 1;
      if (n > 0) return void busy.set(k, n);
      busy.delete(k);
      write();
    },
    async stop() {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}
