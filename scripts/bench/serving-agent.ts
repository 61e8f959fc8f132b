import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { HostClient } from '../../agent/runtime/host-client.js';
import { stringify } from 'yaml';
import type { ModelContent } from '../../shared/index.js';
import { connectCloud } from '../../test/helpers/cloud.js';
import { makeModelArchive } from '../../test/helpers/models.js';
import { startMosquitto } from '../../test/helpers/mosquitto.js';
import { freePort } from '../../test/helpers/ports.js';
import { spawnTree, type ProcessTree } from '../../test/helpers/process-tree.js';
import { waitFor } from '../../test/helpers/wait.js';
import { runLoad } from './loadgen.js';
import { descendants, procMem, sumMem, toMiB, type ProcMem } from './proc-mem.js';
import { median } from './stats.js';

// The serving benchmark's real-agent part (issue 10): `modeld run` as a process, compiled as in
// the release (compiled.ts; it starts the runtime host from the same dist), a real mosquitto,
// 10 small models delivered the way the controller delivers them.
//  - memory with 10 models served: every serving process (the runtime host, and any runtime
//    process of an instance) summed from smaps_rollup, and the agent's own;
//  - failed requests through the node endpoint while the agent's whole process group is
//    SIGKILLed (as `systemctl restart` with KillMode=mixed ends its cgroup) and a new agent
//    started, under load from this process.

const MODELS = 10;
const NODE = 'bench';
const IDLE_MS = 2000;

export interface AgentRunFigures {
  servingPrivateMiB10: number;
  servingPssMiB10: number;
  servingRssMiB10: number;
  servingProcesses: number;
  agentRssMiB: number;
  agentPrivateMiB: number;
  agentPssMiB: number;
  agentRestartFailed: number;
  agentRestart: { requests: number; failed: number; statuses: Record<string, number>; agentDownMs: number; takeoverMs: number };
}

/** Instance processes of the agent (pid files in the run dir): none when every model is in the host. */
function instancePids(runDir: string): number[] {
  try {
    return readdirSync(runDir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => (JSON.parse(readFileSync(join(runDir, f), 'utf8')) as { pid: number }).pid);
  } catch {
    return [];
  }
}

export async function agentRun(dist: string, log: (s: string) => void): Promise<AgentRunFigures> {
  const work = mkdtempSync(join(tmpdir(), 'modeld-bench-agent-'));
  const cleanups: Array<() => Promise<unknown> | unknown> = [() => rmSync(work, { recursive: true, force: true })];
  try {
    const broker = await startMosquitto();
    cleanups.push(() => broker.close());
    const cloud = await connectCloud(broker.url);
    cleanups.push(() => cloud.close());
    const archives = await Promise.all(Array.from({ length: MODELS }, (_, i) => makeModelArchive(join(work, `m${i}.tar.gz`), { w: i + 1, b: 0, dims: 4 })));
    const files: Server = createServer((req, res) => {
      const a = archives[Number(/\/m(\d+)\.tar\.gz$/.exec(req.url ?? '')?.[1])];
      if (!a) return void res.writeHead(404).end();
      const body = readFileSync(a.path);
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise((r) => files.close(r)));
    const filesPort = (files.address() as { port: number }).port;
    const port = await freePort();
    const stateDir = join(work, 'state');
    const configFile = join(work, 'config.yaml');
    writeFileSync(
      configFile,
      stringify({
        node: { name: NODE, address: '127.0.0.1' },
        broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
        stateDir,
        gateway: { bind: '127.0.0.1', port },
        serving: { drainTimeoutMs: 2000, stopGraceMs: 2000 },
        admin: { socket: join(work, 'admin.sock'), metricsPort: 0 },
        log: { level: 'warn' },
      }),
    );
    const agents: ProcessTree[] = [];
    // The host carries the first agent's tree mark: ending the agents ends it too.
    cleanups.push(async () => {
      for (const a of agents.reverse()) await a.end();
    });
    const start = async () => {
      const hellos = cloud.hellos.length;
      const a = spawnTree(process.execPath, [join(dist, 'agent/cli/index.js'), '--config', configFile, 'run'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, MODELD_CONFIG: '' } });
      agents.push(a);
      await waitFor(() => cloud.hellos.length > hellos, 60_000, 'the agent to say hello');
      return a;
    };
    const content = (i: number): ModelContent => ({
      metadata: { name: `m${i}`, namespace: 'default', uid: `u${i}`, generation: 1 },
      spec: { modelName: `m${i}`, deployToLayer: 'edge', frameworkType: 'onnx', manifest: [{ version: '1', downloadURL: `http://127.0.0.1:${filesPort}/m${i}.tar.gz`, sha256sum: archives[i].sha256 }], targetVersion: '1' },
    });
    const endpoint = `http://127.0.0.1:${port}`;
    const allServing = async () => {
      try {
        const body = (await (await fetch(`${endpoint}/v2/models`)).json()) as { models: Array<{ state: string }> };
        return body.models.length === MODELS && body.models.every((m) => m.state === 'READY');
      } catch {
        return false;
      }
    };

    let agent = await start();
    for (let i = 0; i < MODELS; i++) await cloud.update(NODE, content(i));
    await waitFor(allServing, 300_000, `${MODELS} models serving`);
    await sleep(IDLE_MS);
    const host = new HostClient({ config: { stateDir } as never, paths: statePaths(stateDir), log: silentLogger() });
    const hostPid = (await host.state()).pid;
    const samples: Array<{ serving: ProcMem; n: number; agent: ProcMem }> = [];
    for (let s = 0; s < 5; s++) {
      const agentPid = agent.child.pid!;
      const pids = [...new Set([hostPid, ...descendants(hostPid), ...descendants(agentPid), ...instancePids(join(stateDir, 'run'))])].filter((p) => p !== agentPid);
      samples.push({ serving: sumMem(pids.map(procMem)), n: pids.length, agent: procMem(agentPid) });
      await sleep(200);
    }
    const med = (f: (s: (typeof samples)[number]) => number) => toMiB(median(samples.map(f)));
    const mem = {
      servingPrivateMiB10: med((s) => s.serving.private),
      servingPssMiB10: med((s) => s.serving.pss),
      servingRssMiB10: med((s) => s.serving.rss),
      servingProcesses: samples[0].n,
      agentRssMiB: med((s) => s.agent.rss),
      agentPrivateMiB: med((s) => s.agent.private),
      agentPssMiB: med((s) => s.agent.pss),
    };
    log(`  ${MODELS} models served: serving processes (${mem.servingProcesses}) private ${mem.servingPrivateMiB10} MiB, PSS ${mem.servingPssMiB10} MiB, RSS ${mem.servingRssMiB10} MiB; agent RSS ${mem.agentRssMiB} MiB, private ${mem.agentPrivateMiB} MiB, PSS ${mem.agentPssMiB} MiB`);

    // The agent's whole process group SIGKILLed and a new agent started, under load.
    const ac = new AbortController();
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    const load = runLoad({ origin: endpoint, path: '/v2/models/m0/infer', body, connections: 4, signal: ac.signal, durationMs: 300_000 });
    await sleep(1000);
    const killedAt = performance.now();
    process.kill(-agent.child.pid!, 'SIGKILL');
    await agent.exited;
    await sleep(1000);
    const restartedAt = performance.now();
    agent = await start();
    // The new agent adopts what the host serves (nothing reloaded) and reports it serving again.
    const from = cloud.statuses.length;
    await cloud.update(NODE, content(0));
    await cloud.waitStatus((s) => s.name === 'm0' && s.phase === 'Serving' && s.readyReplicas === 1, { from, timeoutMs: 120_000, what: 'm0 serving for the new agent' });
    const takeoverMs = performance.now() - restartedAt;
    await sleep(1000);
    ac.abort();
    const r = await load;
    if ((await host.state()).pid !== hostPid) throw new Error('the runtime host restarted during the agent restart');
    log(`  agent SIGKILLed and restarted under load: ${r.requests} requests, ${r.failed} failed ${r.failed ? JSON.stringify(r.statuses) : ''} (agent down ${Math.round(restartedAt - killedAt)} ms, new agent serving after ${Math.round(takeoverMs)} ms)`);
    return {
      ...mem,
      agentRestartFailed: r.failed,
      agentRestart: { requests: r.requests, failed: r.failed, statuses: r.statuses, agentDownMs: Math.round(restartedAt - killedAt), takeoverMs: Math.round(takeoverMs) },
    };
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}
