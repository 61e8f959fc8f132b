import { Pool } from 'undici';
import { percentile } from './stats.js';

// A loopback load generator: `connections` keep-alive connections, each sending the next request
// as soon as the previous answer is read, for a duration or until stopped. Latency is timed with
// performance.now() (sub-millisecond; autocannon's histogram rounds to whole milliseconds).

export interface LoadResult {
  requests: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  seconds: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Every request's latency, ms (for merging slices). */
  latenciesMs: number[];
}

/** One result from several slices of the same load (requests summed, latencies pooled). */
export function mergeLoads(parts: LoadResult[]): LoadResult {
  const latenciesMs = parts.flatMap((p) => p.latenciesMs);
  const statuses: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const sum = (f: (p: LoadResult) => number) => parts.reduce((a, p) => a + f(p), 0);
  const seconds = sum((p) => p.seconds);
  return {
    requests: sum((p) => p.requests),
    ok: sum((p) => p.ok),
    failed: sum((p) => p.failed),
    statuses,
    seconds,
    reqPerSec: sum((p) => p.ok) / seconds,
    p50Ms: percentile(latenciesMs, 50),
    p99Ms: percentile(latenciesMs, 99),
    latenciesMs,
  };
}

export async function runLoad(opts: {
  origin: string;
  path: string;
  body: string | Buffer;
  /** Request headers (default: content-type application/json). */
  headers?: Record<string, string>;
  connections: number;
  durationMs?: number;
  maxRequests?: number;
  signal?: AbortSignal;
}): Promise<LoadResult> {
  const pool = new Pool(opts.origin, { connections: opts.connections, pipelining: 1 });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let requests = 0;
  let ok = 0;
  const started = performance.now();
  const end = started + (opts.durationMs ?? 3_600_000);
  const max = opts.maxRequests ?? Infinity;
  const headers = opts.headers ?? { 'content-type': 'application/json' };
  const worker = async () => {
    while (!opts.signal?.aborted && performance.now() < end && requests < max) {
      requests++;
      const t0 = performance.now();
      let status = 'error';
      try {
        const res = await pool.request({ path: opts.path, method: 'POST', headers, body: opts.body });
        await res.body.dump();
        status = String(res.statusCode);
      } catch (err) {
        status = `error:${(err as NodeJS.ErrnoException).code ?? (err as Error).name}`;
      }
      latencies.push(performance.now() - t0);
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status.startsWith('2')) ok++;
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, worker));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  return {
    requests,
    ok,
    failed: requests - ok,
    statuses,
    seconds,
    reqPerSec: ok / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    latenciesMs: latencies,
  };
}

/** `other` against `base` at the same load: requests/s ratio and the latency it adds (pure). */
export function compareLoads(base: Pick<LoadResult, 'reqPerSec' | 'p50Ms' | 'p99Ms'>, other: Pick<LoadResult, 'reqPerSec' | 'p50Ms' | 'p99Ms'>): { ratio: number; p50AddedMs: number; p99AddedMs: number } {
  return { ratio: other.reqPerSec / base.reqPerSec, p50AddedMs: other.p50Ms - base.p50Ms, p99AddedMs: other.p99Ms - base.p99Ms };
}
