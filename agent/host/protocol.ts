import { join } from 'node:path';

// The control channel between the agent and the runtime host: HTTP on a unix socket in the state
// directory's run dir, JSON bodies. The agent says what to serve; the host never decides it.
//
//   GET    /state                      -> HostState
//   POST   /routes                     RouteRequest -> NDJSON RouteEvent lines, the last "done" or "error"
//   DELETE /routes/<namespace>/<name>  -> NDJSON: "routed" (unrouted), "drained", "done"
//   GET    /metrics                    -> the node endpoint's Prometheus text
//   POST   /shutdown                   -> the host stops (tests, benchmarks, `modeld host` under no supervisor)

/** Built-in models in the host's sessions, or loopback instances the agent supervises. */
export type RouteKind = 'session' | 'proxy';

/** One entry of the route table: what the agent asked the host to serve for a model resource. */
export interface RouteSpec {
  namespace: string;
  name: string;
  modelName: string;
  version: string;
  sha256?: string;
  /** The installed tree (session routes load their model from it). */
  versionDir: string;
  kind: RouteKind;
  /** Sessions to hold (session routes); instances the agent runs (proxy routes). */
  replicas: number;
  /** Loopback ports of the ready instances (proxy routes). */
  ports?: number[];
  /** The runtime serving it ("onnx" or a config key of runtimes). */
  runtime: string;
}

export interface RouteRequest extends RouteSpec {
  /** How long requests in flight on the replaced version may take to finish. */
  drainTimeoutMs: number;
}

export type RouteEvent =
  | { event: 'routed'; switched: boolean }
  | { event: 'drained'; left: number }
  | { event: 'done'; route: RouteState }
  | { event: 'error'; code: string; message: string };

export interface RouteState extends RouteSpec {
  readyReplicas: number;
  inFlight: number;
  /** Ids of the sessions taking traffic (session routes): a reload gives new ids. */
  sessions?: string[];
  /** Which onnxruntime backend holds the sessions (session routes). */
  backend?: string;
  /** Why the route serves nothing although it should (a restore that failed). */
  error?: string;
}

/**
 * A version a runtime host died while loading (a crash in onnxruntime's native load, the OOM
 * killer, or a load hung past serving.sessionHangMs). A restarted host does not load it again
 * until the agent asks; the agent reports it Failed.
 */
export interface DiedLoading {
  namespace: string;
  name: string;
  version: string;
  sha256?: string;
  versionDir: string;
  /** When the host that died began the load. */
  startedAt: string;
  /** The pid of the host that died. */
  pid: number;
  cause: 'crash' | 'hang';
  /** What the status says. */
  message: string;
}

export interface HostState {
  pid: number;
  /** Unique per host process: a change means the host restarted. */
  bootId: string;
  startedAt: string;
  /** True until every route restored from disk at start is loaded (or failed). */
  restoring: boolean;
  endpoint: { bind: string; port: number };
  routes: RouteState[];
  /** The last time a session run blocked the host past serving.sessionHangMs (it was restarted). */
  lastHang?: { at: string; blockedMs: number; phase?: 'load' | 'run'; model?: string; models?: string[] };
  /** Versions a host died while loading; kept until the model's route changes or is removed. */
  diedLoading?: DiedLoading[];
}

export const hostSocketPath = (runDir: string) => join(runDir, 'host.sock');
export const hostRoutesFile = (runDir: string) => join(runDir, 'host-routes.json');
export const hostHangFile = (runDir: string) => join(runDir, 'host-hang.json');
export const hostLoadingFile = (runDir: string) => join(runDir, 'host-loading.json');
export const routeKey = (namespace: string, name: string) => `${namespace}/${name}`;
