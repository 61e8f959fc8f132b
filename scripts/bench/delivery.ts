// Delivery benchmark (issue: verified delivery pipeline). On a generated archive of incompressible
// weights served from a loopback HTTP server, alternating in one run:
//   (a) the agent's fetch + verify + install (scripts/bench/delivery-agent.ts, its own process)
//   (b) the shell pipeline  curl -s URL | tee >(sha256sum) | tar xzf - -C DIR
// plus the resume overhead after a cut at 50%, and single-stage timings that show where time goes.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGunzip, createGzip } from 'node:zlib';
import { parseConfig } from '../../agent/config/load.js';
import { BlobStore } from '../../agent/fetch/blob-store.js';
import { fetchBlob } from '../../agent/fetch/download.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { openStore } from '../../agent/store/index.js';
import { median, round } from './stats.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const MiB = 1024 * 1024;

/** A .tar.gz of one file of random bytes (gzip level 1: random data does not compress anyway). Cached by size. */
async function makeArchive(size: number): Promise<{ path: string; sha256: string; bytes: number }> {
  const dir = join(ROOT, '.bench');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `weights-${size}.tar.gz`);
  const shaFile = `${path}.sha256`;
  if (!existsSync(path) || !existsSync(shaFile)) {
    const header = Buffer.alloc(512);
    header.write('weights.bin', 0);
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(size.toString(8).padStart(11, '0') + '\0', 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    async function* tarStream() {
      yield header;
      for (let left = size; left > 0; left -= 4 * MiB) yield randomBytes(Math.min(4 * MiB, left));
      yield Buffer.alloc((512 - (size % 512)) % 512 + 1024);
    }
    await pipeline(tarStream(), createGzip({ level: 1 }), createWriteStream(path));
    writeFileSync(shaFile, await sha256File(path));
  }
  return { path, sha256: readFileSync(shaFile, 'utf8').trim(), bytes: statSync(path).size };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Serves the archive with Range support; `cutAt` drops the first request's connection there. */
function serve(path: string, size: number): Promise<{ url: string; server: Server; sent: () => number; cutNext: (at: number) => void }> {
  let sent = 0;
  let cut: number | undefined;
  const server = createServer((req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const headers = { 'content-type': 'application/gzip', etag: '"bench"', 'accept-ranges': 'bytes' };
    if (m) res.writeHead(206, { ...headers, 'content-length': size - start, 'content-range': `bytes ${start}-${size - 1}/${size}` });
    else res.writeHead(200, { ...headers, 'content-length': size });
    const stopAt = cut;
    cut = undefined;
    const stream = createReadStream(path, { start, end: stopAt !== undefined ? stopAt - 1 : undefined, highWaterMark: 1 * MiB });
    stream.on('data', (c) => (sent += (c as Buffer).length));
    stream.on('end', () => (stopAt !== undefined ? res.socket?.destroy() : res.end()));
    stream.pipe(res, { end: false });
  });
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () =>
      r({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/weights.tar.gz`, server, sent: () => sent, cutNext: (at) => (cut = at) }),
    ),
  );
}

// Children run asynchronously: the archive server lives in this process's event loop.
async function runAgent(url: string, sha256: string): Promise<{ totalMs: number; fetchMs: number; installMs: number; overlapped: boolean; maxRssMB: number }> {
  const state = mkdtempSync(join(tmpdir(), 'bench-agent-'));
  try {
    // Compiled JS, as the daemon runs in production: tsx's transpiler alone adds ~50 MB of RSS.
    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'dist/scripts/bench/delivery-agent.js'), url, sha256, state], { cwd: ROOT, encoding: 'utf8' });
    return JSON.parse(stdout.trim().split('\n').at(-1)!);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
}

async function runShell(url: string, sha256: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-shell-'));
  try {
    const t0 = performance.now();
    const child = spawn('bash', ['-c', `curl -s "$0" | tee >(sha256sum > "$1/.sum") | tar xzf - -C "$1"`, url, dir], { stdio: 'inherit' });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    const ms = performance.now() - t0;
    if (code !== 0) throw new Error('shell pipeline failed');
    // tee's process substitution may finish a moment after tar: wait for the digest, then check it.
    const sum = () => (existsSync(join(dir, '.sum')) ? readFileSync(join(dir, '.sum'), 'utf8') : '');
    for (let i = 0; i < 500 && !sum().includes(' '); i++) await new Promise((r) => setTimeout(r, 10));
    if (!sum().startsWith(sha256)) throw new Error('shell pipeline digest differs');
    return ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes fetched twice when the connection is cut at 50% and the agent resumes. */
async function resumeOverhead(srv: Awaited<ReturnType<typeof serve>>, archive: { sha256: string; bytes: number }): Promise<number> {
  const state = mkdtempSync(join(tmpdir(), 'bench-resume-'));
  try {
    const config = parseConfig({ stateDir: state, fetch: { reserveBytes: 0, backoffBaseMs: 10, backoffMaxMs: 50 } });
    const paths = statePaths(state);
    const store = openStore(paths.db);
    const log = silentLogger();
    const before = srv.sent();
    srv.cutNext(Math.floor(archive.bytes / 2));
    await fetchBlob(
      { url: srv.url, sha256: archive.sha256 },
      { paths, blobStore: new BlobStore({ paths, blobs: store.blobs, log }), downloads: store.downloads, policy: fetchPolicyFromConfig(config), log },
    );
    store.close();
    return srv.sent() - before - archive.bytes;
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
}

/** Single stages over the same bytes, in this process: where the time goes. */
async function stages(path: string, url: string): Promise<Record<string, number>> {
  const time = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    return round(performance.now() - t0, 0);
  };
  const sink = join(tmpdir(), `bench-sink-${process.pid}`);
  const out = {
    downloadOnlyMs: await time(async () => {
      const res = await fetch(url);
      for await (const _ of res.body!) void _;
    }),
    sha256OnlyMs: await time(() => sha256File(path)),
    gunzipOnlyMs: await time(() => pipeline(createReadStream(path, { highWaterMark: MiB }), createGunzip({ chunkSize: 256 * 1024 }), async function* (src) {
      for await (const _ of src) void _;
    })),
    gunzipAndWriteMs: await time(() => pipeline(createReadStream(path, { highWaterMark: MiB }), createGunzip({ chunkSize: 256 * 1024 }), createWriteStream(sink))),
  };
  rmSync(sink, { force: true });
  return out;
}

export async function benchDelivery(opts: { json: boolean; runs: number; size?: number }): Promise<Record<string, unknown>> {
  const log = (s: string) => (opts.json ? process.stderr : process.stdout).write(`${s}\n`);
  const size = opts.size ?? 1024 * MiB;
  const runs = Math.max(3, Math.floor(opts.runs || 3));
  log(`delivery benchmark: ${round(size / MiB, 0)} MiB of incompressible weights in a .tar.gz, ${runs} alternating runs of each`);
  log('building dist/ (the agent runs as compiled JS, as in production)');
  // tsc emits even when some unrelated file has a type error; only the emitted agent matters here.
  await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT }).catch(() => {});
  if (!existsSync(join(ROOT, 'dist/scripts/bench/delivery-agent.js'))) throw new Error('tsc did not emit dist/scripts/bench/delivery-agent.js');
  const archive = await makeArchive(size);
  const srv = await serve(archive.path, archive.bytes);
  try {
    const agent: Array<Awaited<ReturnType<typeof runAgent>>> = [];
    const shell: number[] = [];
    for (let i = 0; i < runs; i++) {
      agent.push(await runAgent(srv.url, archive.sha256));
      shell.push(await runShell(srv.url, archive.sha256));
      log(`run ${i + 1}/${runs}: agent ${round(agent[i].totalMs, 0)} ms (${agent[i].overlapped ? 'unpacked while downloading' : `fetch ${round(agent[i].fetchMs, 0)} + install ${round(agent[i].installMs, 0)}`}), peak RSS ${round(agent[i].maxRssMB, 1)} MB; shell ${round(shell[i], 0)} ms`);
    }
    const agentMs = median(agent.map((a) => a.totalMs));
    const shellMs = median(shell);
    const resumeBytes = await resumeOverhead(srv, archive);
    const breakdown = await stages(archive.path, srv.url);
    const result = {
      bench: 'delivery',
      archiveBytes: archive.bytes,
      runs,
      agentMs: round(agentMs, 0),
      agentFetchMs: round(median(agent.map((a) => a.fetchMs)), 0),
      agentInstallMs: round(median(agent.map((a) => a.installMs)), 0),
      agentOverlapped: agent.every((a) => a.overlapped),
      shellMs: round(shellMs, 0),
      ratio: round(agentMs / shellMs, 3),
      agentPeakRssMB: round(Math.max(...agent.map((a) => a.maxRssMB)), 1),
      agentMBps: round(archive.bytes / MiB / (agentMs / 1000), 1),
      resumeRefetchedBytes: resumeBytes,
      resumeRefetchedPct: round((100 * resumeBytes) / archive.bytes, 3),
      stages: breakdown,
      targets: { ratioAtMost: 1.0, stretch: 0.8, peakRssUnderMB: 150 },
      met: { ratio: agentMs / shellMs <= 1.0, stretch: agentMs / shellMs <= 0.8, rss: Math.max(...agent.map((a) => a.maxRssMB)) < 150 },
    };
    log(
      `median: agent ${result.agentMs} ms vs shell ${result.shellMs} ms -> ratio ${result.ratio} (target <= 1.0, stretch 0.8); ` +
        `agent peak RSS ${result.agentPeakRssMB} MB (target < 150); resume after a cut at 50% fetched ${resumeBytes} bytes twice (${result.resumeRefetchedPct}%)`,
    );
    log(`stages on the same bytes: ${Object.entries(breakdown).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    return result;
  } finally {
    srv.server.close();
    srv.server.closeAllConnections();
  }
}
