import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runCli, type CliResult } from '../helpers/modeld-cli.js';
import { inferX } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';

// Real agents for controller tests: `modeld run` child processes on loopback, one per node, each
// with its own state directory, admin socket, gateway port and config file (the same file its CLI
// runs with), and a file server for the model archives they fetch.

const root = new URL('../..', import.meta.url).pathname;
const agentCli = join(root, 'agent/cli/index.ts');
export const haveAgent = existsSync(agentCli);

export interface RealAgent {
  name: string;
  tree: ProcessTree;
  gatewayPort: number;
  configFile: string;
  /** What the agent wrote on stdout and stderr, for a failing test's log tail. */
  logs: string[];
  /** `modeld <args>` against this agent (its admin socket). */
  cli(...args: string[]): Promise<CliResult>;
  /** HTTP status of GET /v2/models/<model>/ready on its gateway (undefined: no answer). */
  ready(model: string): Promise<number | undefined>;
  /** y for one x through its gateway (undefined: not served). */
  infer(model: string, x: number): Promise<number | undefined>;
  /** A graceful stop (it stops its runtimes); whatever still runs after it is killed. */
  stop(): Promise<void>;
}

export interface AgentOptions {
  name: string;
  labels?: Record<string, string>;
  brokerUrl: string;
  /** Its files go under <dir>/<name>. */
  dir: string;
  /** Config sections merged over the defaults (serving, deferral, ...). */
  config?: Record<string, unknown>;
}

export async function startAgent(o: AgentOptions): Promise<RealAgent> {
  const gatewayPort = await freePort();
  const home = join(o.dir, o.name);
  mkdirSync(home, { recursive: true });
  const config = {
    node: { name: o.name, labels: o.labels ?? {}, layer: 'edge', address: '127.0.0.1' },
    broker: { url: o.brokerUrl, reconnectMs: 200, reconnectMaxMs: 1000 },
    stateDir: join(home, 'state'),
    gateway: { bind: '127.0.0.1', port: gatewayPort },
    admin: { socket: join(home, 'modeld.sock'), metricsBind: '127.0.0.1', metricsPort: 0 },
    fetch: { progressIntervalMs: 200, backoffBaseMs: 50, backoffMaxMs: 500 },
    log: { level: 'info' },
    ...o.config,
  };
  const configFile = join(home, 'config.yaml');
  writeFileSync(configFile, stringify(config));
  const tree = spawnTree(process.execPath, ['--import', 'tsx', agentCli, '--config', configFile, 'run'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MODELD_CONFIG: '' } });
  const logs: string[] = [];
  tree.child.stdout!.on('data', (d) => logs.push(String(d)));
  tree.child.stderr!.on('data', (d) => logs.push(String(d)));
  const base = `http://127.0.0.1:${gatewayPort}`;
  return {
    name: o.name,
    tree,
    gatewayPort,
    configFile,
    logs,
    cli: (...args) => runCli(configFile, args),
    ready: async (model) => (await fetch(`${base}/v2/models/${model}/ready`).catch(() => undefined))?.status,
    infer: async (model, x) => {
      const r = await inferX(base, model, [x]).catch(() => undefined);
      return r?.status === 200 ? (r.body?.outputs?.[0]?.data?.[0] as number | undefined) : undefined;
    },
    stop: () => tree.stop('SIGTERM'),
  };
}

/** Serves the files of `dir` by name over HTTP on loopback (the archives' downloadURLs). */
export async function startFileServer(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = join(dir, (req.url ?? '').replace(/[^a-z0-9.-]/gi, ''));
    if (!existsSync(path)) return void res.writeHead(404).end();
    const body = readFileSync(path);
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Each agent's last 4 kB of output, for a failing test. */
export function printLogTails(agents: RealAgent[]): void {
  for (const a of agents) console.error(`--- ${a.name} log tail ---\n${a.logs.join('').slice(-4000)}`);
}
