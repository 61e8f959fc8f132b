import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import type { ModelContent } from '../../shared/index.js';
import { connectCloud } from '../../test/helpers/cloud.js';
import { makeModelArchive } from '../../test/helpers/models.js';
import { startMosquitto } from '../../test/helpers/mosquitto.js';
import { startNotifySocket } from '../../test/helpers/notify-socket.js';
import { freePort } from '../../test/helpers/ports.js';
import { waitFor } from '../../test/helpers/wait.js';
import { descendants, procMem } from './proc-mem.js';
import { median, round } from './stats.js';

// Edge figures (issue 5): the release tarball's size for this arch; idle RSS of the daemon with 10
// models served (the agent process alone, its runtime processes summed apart); time from launch
// to READY=1 with those 10 models in the store. The daemon is the packed release (dist + prod
// node_modules, as installed on a board), not the tsx sources: tsx's compiler would add memory.
//
//   npx tsx scripts/bench/edge.ts [--runs N] [--json]     (or: npm run bench -- edge)

const MODELS = 10;
const IDLE_MS = 5000;
const ROOT = resolve(import.meta.dirname, '../..');

const MB = 1024 * 1024;
const rss = (pid: number) => procMem(pid).rss;
const privateAndPss = (pid: number) => {
  const m = procMem(pid);
  return { priv: m.private, pss: m.pss };
};

export async function benchEdge(opts: { json: boolean; runs: number }): Promise<Record<string, unknown>> {
  const say = (s: string) => (opts.json ? process.stderr : process.stdout).write(`${s}\n`);
  const work = mkdtempSync(join(tmpdir(), 'modeld-bench-edge-'));
  const cleanups: Array<() => Promise<void> | void> = [() => rmSync(work, { recursive: true, force: true })];
  try {
    // 1. The release tarball for this arch.
    say('edge: building the release tarball (scripts/build-release.sh)');
    const built = spawnSync(join(ROOT, 'scripts/build-release.sh'), ['--out', join(work, 'out')], { encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`build-release failed: ${built.stderr}`);
    const tarball = built.stdout.trim().split('\n').at(-1)!.split(' ')[0];
    const tarballBytes = statSync(tarball).size;
    const release = join(work, 'release');
    mkdirSync(release);
    spawnSync('tar', ['-xzf', tarball, '-C', release, '--strip-components=1']);
    // What an arm64 tarball would weigh: swap this arch's onnxruntime binaries for arm64's (both
    // ship in onnxruntime-node), gzip-compressed the same way. better-sqlite3 (~2 MB) is left as is.
    const ortDir = (a: string) => join(ROOT, 'node_modules/onnxruntime-node/bin/napi-v6/linux', a);
    const gz = (dir: string) => Number(spawnSync('sh', ['-c', `tar -C "${dir}" -cf - . | gzip -c | wc -c`], { encoding: 'utf8' }).stdout.trim());
    const arm64EstimateBytes = process.arch === 'arm64' ? tarballBytes : tarballBytes - gz(ortDir(process.arch)) + gz(ortDir('arm64'));
    say(`edge: tarball ${tarball.split('/').at(-1)} ${round(tarballBytes / MB, 1)} MiB; arm64 estimate ${round(arm64EstimateBytes / MB, 1)} MiB (not built: no arm64 better-sqlite3 here)`);

    // 2. A broker, a cloud, archives on a local HTTP server, and 10 models delivered once.
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const cloud = await connectCloud(broker.url);
    cleanups.push(() => cloud.close());
    const archives = await Promise.all(Array.from({ length: MODELS }, (_, i) => makeModelArchive(join(work, `m${i}.tar.gz`), { w: i + 1, b: 0 })));
    const server: Server = createServer((req, res) => {
      const i = Number(/\/m(\d+)\.tar\.gz$/.exec(req.url ?? '')?.[1]);
      const a = archives[i];
      if (!a) return void res.writeHead(404).end();
      const body = readFileSync(a.path);
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const httpPort = (server.address() as { port: number }).port;

    const gatewayPort = await freePort();
    const config = join(work, 'config.yaml');
    writeFileSync(
      config,
      stringify({
        node: { name: 'edge-bench', address: '127.0.0.1' },
        broker: { url: broker.url, reconnectMs: 500 },
        stateDir: join(work, 'state'),
        gateway: { bind: '127.0.0.1', port: gatewayPort },
        admin: { socket: join(work, 'modeld.sock'), metricsPort: 0 },
        log: { level: 'warn' },
      }),
    );
    let daemon: ChildProcess | undefined;
    const launch = (env: NodeJS.ProcessEnv = {}) => {
      const child = spawn(join(release, 'bin/modeld'), ['--config', config, 'run'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, MODELD_CONFIG: '', ...env } });
      daemon = child;
      return child;
    };
    const stop = async () => {
      const child = daemon;
      if (!child || child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    };
    cleanups.push(async () => {
      if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    });
    const allServing = async () => {
      try {
        const body = (await (await fetch(`http://127.0.0.1:${gatewayPort}/v2/models`)).json()) as { models: Array<{ state: string }> };
        return body.models.length === MODELS && body.models.every((m) => m.state === 'READY');
      } catch {
        return false;
      }
    };

    say(`edge: delivering ${MODELS} models`);
    launch();
    await waitFor(() => cloud.hellos.includes('edge-bench'), 60_000, 'hello');
    for (let i = 0; i < MODELS; i++) {
      const content: ModelContent = {
        metadata: { name: `m${i}`, namespace: 'default', uid: `u${i}`, generation: 1 },
        spec: { modelName: `m${i}`, deployToLayer: 'edge', frameworkType: 'onnx', manifest: [{ version: '1', downloadURL: `http://127.0.0.1:${httpPort}/m${i}.tar.gz`, sha256sum: archives[i].sha256 }], targetVersion: '1' },
      };
      await cloud.update('edge-bench', content);
    }
    await waitFor(allServing, 300_000, `${MODELS} models serving`);
    await stop();

    // 3. Per run: launch with the 10 models in the store -> READY; all serving; idle RSS.
    const readyMs: number[] = [];
    const servingMs: number[] = [];
    const agentRss: number[] = [];
    const agentPrivate: number[] = [];
    const agentPss: number[] = [];
    const runtimesRss: number[] = [];
    let runtimeCount = 0;
    let semiRss = 0;
    // The last extra run: the same with a smaller V8 young generation (a tuning knob, not the default).
    const SEMI = '--max-semi-space-size=2';
    for (let run = 0; run <= opts.runs; run++) {
      const variant = run === opts.runs;
      const sock = await startNotifySocket(join(work, `notify-${run}.sock`));
      const t0 = performance.now();
      const child = launch({ NOTIFY_SOCKET: sock.path, ...(variant ? { NODE_OPTIONS: SEMI } : {}) });
      await waitFor(() => sock.messages.some((m) => m.fields.READY === '1'), 60_000, 'READY');
      readyMs.push(performance.now() - t0);
      await waitFor(allServing, 120_000, 'all models serving again');
      servingMs.push(performance.now() - t0);
      await sleep(IDLE_MS);
      const samples: Array<{ agent: number; priv: number; pss: number; runtimes: number; n: number }> = [];
      for (let s = 0; s < 5; s++) {
        const kids = descendants(child.pid!).filter((p) => rss(p) > 0);
        samples.push({ agent: rss(child.pid!), ...privateAndPss(child.pid!), runtimes: kids.reduce((a, p) => a + rss(p), 0), n: kids.length });
        await sleep(200);
      }
      if (variant) {
        semiRss = median(samples.map((s) => s.agent));
        await stop();
        await sock.stop();
        say(`edge: with NODE_OPTIONS=${SEMI}: agent RSS ${round(semiRss / MB, 1)} MiB`);
        readyMs.pop();
        servingMs.pop();
        continue;
      }
      agentRss.push(median(samples.map((s) => s.agent)));
      agentPrivate.push(median(samples.map((s) => s.priv)));
      agentPss.push(median(samples.map((s) => s.pss)));
      runtimesRss.push(median(samples.map((s) => s.runtimes)));
      runtimeCount = samples[0].n;
      await stop();
      await sock.stop();
      say(`edge: run ${run + 1}: READY ${Math.round(readyMs.at(-1)!)} ms, all serving ${Math.round(servingMs.at(-1)!)} ms, agent RSS ${round(agentRss.at(-1)! / MB, 1)} MiB (private ${round(agentPrivate.at(-1)! / MB, 1)}, PSS ${round(agentPss.at(-1)! / MB, 1)}), runtimes ${round(runtimesRss.at(-1)! / MB, 1)} MiB (${runtimeCount} processes)`);
    }
    const result = {
      arch: process.arch,
      node: process.version,
      models: MODELS,
      runs: opts.runs,
      tarballMiB: round(tarballBytes / MB, 1),
      tarballArm64EstimateMiB: round(arm64EstimateBytes / MB, 1),
      launchToReadyMs: Math.round(median(readyMs)),
      launchToAllServingMs: Math.round(median(servingMs)),
      idleAgentRssMiB: round(median(agentRss) / MB, 1),
      idleAgentPrivateMiB: round(median(agentPrivate) / MB, 1),
      idleAgentPssMiB: round(median(agentPss) / MB, 1),
      idleAgentRssSmallSemiSpaceMiB: round(semiRss / MB, 1),
      idleRuntimesRssMiB: round(median(runtimesRss) / MB, 1),
      runtimeProcesses: runtimeCount,
    };
    say(`edge: median of ${opts.runs}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--runs');
  const json = args.includes('--json');
  const r = await benchEdge({ json, runs: i >= 0 ? Number(args[i + 1]) : 3 });
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}
