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
  /** What the host is doing now (the model being loaded or asked), for the hang file. */
  doing(what: { model: string; phase: 'load' | 'run' } | undefined): void;
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
  let last = '';
  return {
    doing(what) {
      const s = what ? JSON.stringify(what) : '';
      if (s === last) return;
      last = s;
      const b = Buffer.from(s, 'utf8').subarray(0, 500);
      text.set(b);
      len[0] = b.length;
    },
    async stop() {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}
