import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { ModelContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from './agent-process.js';
import { startChaosServer, type ChaosServer } from './chaos-server.js';
import { connectCloud, type Cloud } from './cloud.js';
import { makeModelArchive } from './models.js';
import { startMosquitto, type Broker, type BrokerOptions } from './mosquitto.js';
import { freePort } from './ports.js';
import { WAIT_MS, waitFor } from './wait.js';

// The end-to-end fixture of the agent tests: a temp folder, a real mosquitto, the cloud's side of
// the wire, a gateway port, the agent as a real child process (startAgentProcess) and the HTTP
// servers that hold its archives. One teardown ends all of it, in the order that keeps each
// peer's last words readable: agents, cloud, servers, broker, then the folder.

export const E2E_NODE = 'edge-1';

/** The spec of the `linear` onnx model at `generation`: these versions, `targetVersion` wanted. */
export const linearContent = (generation: number, versions: Array<{ version: string; url: string; sha256: string }>, targetVersion: string): ModelContent => ({
  metadata: { name: 'linear', namespace: 'default', uid: 'u1', generation },
  spec: {
    modelName: 'linear',
    deployToLayer: 'edge',
    frameworkType: 'onnx',
    manifest: versions.map((v) => ({ version: v.version, downloadURL: v.url, sha256sum: v.sha256 })),
    targetVersion,
  },
});

export type AgentConfig = Record<string, unknown> & { stateDir: string };

export interface E2eOptions {
  /** mkdtemp prefix of the test's folder. */
  prefix: string;
  broker?: BrokerOptions;
  /** A persistent cloud session (with a persistent broker nothing is lost while it is away). */
  cloud?: { persistent?: boolean };
  /** A free port for the serving gateway (default true); false for `--no-serve` agents. */
  gateway?: boolean;
}

interface Stoppable {
  stop(): Promise<void>;
}

export interface E2e {
  readonly work: string;
  readonly stateDir: string;
  readonly broker: Broker;
  readonly cloud: Cloud;
  /** 0 when the fixture was asked for no gateway. */
  readonly gatewayPort: number;
  /** Every agent started, in order. */
  readonly agents: readonly AgentProcess[];
  /**
   * The agent config most tests want (node, broker, state, gateway, admin socket, quick fetch
   * retries), each top-level section replaced by `sections`; a section given as undefined is left out.
   */
  config(sections?: Record<string, unknown>): AgentConfig;
  /** Starts `modeld run` on `config` and (unless told not to) waits for its hello. */
  startAgent(config?: AgentConfig, args?: string[], opts?: { waitHello?: boolean; nodeArgs?: string[]; env?: Record<string, string> }): Promise<AgentProcess>;
  /** Stopped at teardown. */
  track<T extends Stoppable>(server: T): T;
  /** A chaos server holding `body`, stopped at teardown. */
  serveBody(body: Buffer): Promise<ChaosServer>;
  /** A linear model archive (or a broken one) at `v<version>.tar.gz`, served; its manifest entry. */
  serveModel(version: string, model: { w: number; b: number } | { broken: true }, extra?: Record<string, string>): Promise<{ version: string; url: string; sha256: string }>;
  /** One OIP infer of x through the gateway; status 0 when nothing answered. */
  infer(model: string, x: number, opts?: { shape?: number[] }): Promise<{ status: number; y?: number; version?: string }>;
}

export interface E2eRun extends E2e {
  /** Ends every agent tree, the cloud, the servers and the broker, and removes the folder. */
  end(): Promise<void>;
}

export async function startE2e(opts: E2eOptions): Promise<E2eRun> {
  const work = mkdtempSync(join(tmpdir(), opts.prefix));
  const stateDir = join(work, 'state');
  const agents: AgentProcess[] = [];
  const servers: Stoppable[] = [];
  let broker: Broker | undefined;
  let cloud: Cloud | undefined;

  const end = async () => {
    const errors: unknown[] = [];
    const step = async (fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    for (const a of agents.splice(0)) await step(() => a.end());
    if (cloud) await step(() => cloud!.close());
    for (const s of servers.splice(0)) await step(() => s.stop());
    if (broker) await step(() => broker!.close());
    await step(() => rmSync(work, { recursive: true, force: true }));
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, 'e2e teardown');
  };

  let gatewayPort = 0;
  try {
    broker = await startMosquitto(opts.broker);
    cloud = await connectCloud(broker.url, undefined, undefined, { persistent: opts.cloud?.persistent });
    if (opts.gateway !== false) gatewayPort = await freePort();
  } catch (err) {
    await end().catch(() => {});
    throw err;
  }
  const b = broker;
  const c = cloud;

  const track = <T extends Stoppable>(server: T): T => (servers.push(server), server);
  const serveBody = async (body: Buffer) => track(await startChaosServer({ body }));
  const config = (sections: Record<string, unknown> = {}): AgentConfig => {
    const merged: Record<string, unknown> = {
      node: { name: E2E_NODE, address: '127.0.0.1' },
      broker: { url: b.url, reconnectMs: 200, reconnectMaxMs: 1000 },
      stateDir,
      ...(gatewayPort ? { gateway: { bind: '127.0.0.1', port: gatewayPort } } : {}),
      admin: { socket: join(work, 'modeld.sock'), metricsPort: 0 },
      fetch: { progressIntervalMs: 200, backoffBaseMs: 50, backoffMaxMs: 500 },
      ...sections,
    };
    for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
    return merged as AgentConfig;
  };

  return {
    work,
    stateDir,
    broker: b,
    cloud: c,
    gatewayPort,
    agents,
    config,
    async startAgent(cfg = config(), args = [], o = {}) {
      const hellos = c.hellos.length;
      const a = startAgentProcess(cfg, args, { nodeArgs: o.nodeArgs, env: o.env });
      agents.push(a);
      if (o.waitHello === false) return a;
      // An agent that died or never connected fails here with what it said, not a bare timeout.
      let exit: number | null | undefined;
      void a.exited.then((code) => (exit = code));
      try {
        await waitFor(() => {
          if (exit !== undefined) throw new Error(`the agent exited (${exit}) before its hello`);
          return c.hellos.length > hellos;
        }, WAIT_MS, 'the agent to say hello');
      } catch (err) {
        const said = a.logs.slice(-15).map((l) => `${l.level ?? ''} ${l.msg ?? ''} ${l.err ? JSON.stringify(l.err).slice(0, 300) : ''}`).join('\n');
        throw new Error(`${(err as Error).message}\nlast log lines:\n${said}\nstderr:\n${a.stderr().slice(-2000)}`);
      }
      return a;
    },
    track,
    serveBody,
    async serveModel(version, model, extra = {}) {
      const a = await makeModelArchive(join(work, `v${version}.tar.gz`), model, extra);
      const server = await serveBody(readFileSync(a.path));
      return { version, url: server.urlFor(`/v${version}.tar.gz`), sha256: a.sha256 };
    },
    async infer(model, x, o = {}) {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/v2/models/${model}/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'x', shape: o.shape ?? [1, 1], datatype: 'FP32', data: [x] }] }),
      }).catch(() => undefined);
      if (!res) return { status: 0 };
      const body = (await res.json().catch(() => ({}))) as { outputs?: Array<{ data: number[] }>; model_version?: string };
      return { status: res.status, y: body.outputs?.[0]?.data?.[0], version: body.model_version };
    },
    end,
  };
}

/**
 * The fixture for a test file: a fresh run before each test, ended after it. The object it
 * returns reads the current test's run.
 */
export function useE2e(opts: E2eOptions): E2e {
  let run: E2eRun | undefined;
  beforeEach(async () => {
    run = await startE2e(opts);
  });
  afterEach(async () => {
    const r = run;
    run = undefined;
    await r?.end();
  });
  const now = (): E2eRun => {
    if (!run) throw new Error('the e2e fixture is read outside a test');
    return run;
  };
  return {
    get work() {
      return now().work;
    },
    get stateDir() {
      return now().stateDir;
    },
    get broker() {
      return now().broker;
    },
    get cloud() {
      return now().cloud;
    },
    get gatewayPort() {
      return now().gatewayPort;
    },
    get agents() {
      return now().agents;
    },
    config: (sections) => now().config(sections),
    startAgent: (config, args, o) => now().startAgent(config, args, o),
    track: (server) => now().track(server),
    serveBody: (body) => now().serveBody(body),
    serveModel: (version, model, extra) => now().serveModel(version, model, extra),
    infer: (model, x, o) => now().infer(model, x, o),
  };
}
