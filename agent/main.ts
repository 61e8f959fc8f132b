import { mkdirSync } from 'node:fs';
import { AdminServer } from './admin/server.js';
import { acquireStateLockWaiting } from './admin/state-lock.js';
import type { Config } from './config/schema.js';
import { BlobStore } from './fetch/blob-store.js';
import { fetchPolicyFromConfig } from './fetch/policy.js';
import { checkUrl } from './fetch/url-policy.js';
import { BearerToken, gatewayTls } from './runtime/gateway-auth.js';
import { MqttLink } from './link/mqtt-link.js';
import type { Logger } from './log.js';
import { statePaths, type StatePaths } from './paths.js';
import { Intake } from './reconcile/intake.js';
import { nodeLimitsFromConfig } from './reconcile/node-limits.js';
import { recoverState } from './reconcile/recover.js';
import { Reporter } from './reconcile/report.js';
import { Runner } from './reconcile/runner.js';
import { Serving, type ServingDeps } from './runtime/serving.js';
import { openStore, type Store } from './store/index.js';
import { AGENT_VERSION } from './version.js';
import { buildStatus } from './admin/status-view.js';
import { StoreSize } from './metrics/store-size.js';
import type { AgentMetrics } from './metrics/metrics.js';
import type { ConfigView } from './config/explain.js';
import { loadTrustedKeys, trustedKeyMap } from './security/trusted-keys.js';
import { HelloNonce } from './link/hello-nonce.js';

/** Everything the running agent is made of: built once here, passed to whoever needs it. */
export interface Agent {
  config: Config;
  paths: StatePaths;
  store: Store;
  log: Logger;
  blobStore: BlobStore;
  serving?: Serving;
  link: MqttLink;
  reporter: Reporter;
  runner: Runner;
  intake: Intake;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Serve models (runtimes + gateway). Off: deliver only, `current` is the end state. */
  serve?: boolean;
  /** Delay before retrying a version whose download failed for a passing reason. */
  retryDelayMs?: number;
  /** Told each time a version takes traffic (benchmarks). */
  onSwitch?: ServingDeps['onSwitch'];
  /** Prometheus metrics to feed (`modeld run` serves them on admin.metricsPort). */
  metrics?: AgentMetrics;
  /** The configuration with each value's source, for `modeld config view` (GET /v1/config). */
  configView?: ConfigView;
}

/** Starts the parts in order; `stop()` stops them in reverse. */
export async function startAgent(config: Config, log: Logger, opts: StartOptions = {}): Promise<Agent> {
  const paths = statePaths(config.stateDir);
  mkdirSync(paths.root, { recursive: true, mode: 0o750 });
  // Held for the daemon's whole life: the CLI writes the state directory only when it can take it.
  const lock = await acquireStateLockWaiting(paths.lockFile, { kind: 'daemon', command: 'modeld run' }, { waitMs: 10_000 });
  let store: Store;
  try {
    store = openStore(paths.db);
  } catch (err) {
    lock.release();
    throw err;
  }
  const stops: Array<() => Promise<void> | void> = [() => lock.release(), () => store.close()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) {
      try {
        await stop();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'error while stopping');
      }
    }
  };
  try {
    await recoverState(paths, store, log);

    const blobStore = new BlobStore({ paths, blobs: store.blobs, log });
    const fetchPolicy = fetchPolicyFromConfig(config);

    // The link is made first so that statuses go to its outbox; it connects last.
    let intakeRef: Intake | undefined;
    const trustedKeys = loadTrustedKeys(config.security.trustedKeys);
    const trusted = trustedKeyMap(trustedKeys);
    if (trustedKeys.length) log.info({ keys: trustedKeys.map((k) => ({ file: k.file, keyId: k.keyId })), allowLocalApply: config.security.allowLocalApply }, 'messages from the cloud must be signed');
    else log.warn('security.trustedKeys is empty: messages from the cloud are not checked (anyone who can publish on the broker can command this node); see docs/security.md');
    const hello = new HelloNonce();
    const link = new MqttLink({
      config,
      log,
      outbox: store.outbox,
      trusted,
      hello,
      lastSequence: () => store.freshness.maxSequence(config.node.name),
      agentVersion: AGENT_VERSION,
      onMessage: (topic, payload) => intakeRef?.handle(topic, payload),
      onConnectionChange: opts.metrics && ((up) => opts.metrics!.onBrokerConnection(up)),
    });

    let serving: Serving | undefined;
    if (opts.serve !== false) {
      // The runtime host reads these; read here too, so a bad file stops the daemon (exit 78) with its key.
      gatewayTls(config);
      if (config.gateway.tokenFile) new BearerToken(config.gateway.tokenFile);
      serving = new Serving({
        onSwitch: opts.onSwitch,
        config,
        paths,
        log,
        onRuntimeRestarts: opts.metrics && ((ns, name, _v, n) => opts.metrics!.onRuntimeRestarts(ns, name, n)),
        onHostRestart: (info) => {
          opts.metrics?.onHostRestart();
          const hang = info.lastHang ? `: a run of ${info.lastHang.model ?? 'a model'} blocked it for ${info.lastHang.blockedMs} ms (serving.sessionHangMs)` : '';
          store.events.add({ kind: 'HostRestarted', message: `the runtime host restarted (pid ${info.previousPid ?? '?'} -> ${info.pid})${hang}; it restores every model` });
        },
      });
      await serving.start();
      stops.push(() => serving!.close());
    }

    const reporter = new Reporter({
      config,
      store,
      log,
      serving,
      enqueue: (topic, payload, o) => link.enqueue(topic, payload, o),
      online: () => link.connected,
      onReport: opts.metrics && ((s) => opts.metrics!.onStatus(s)),
    });
    const runner = new Runner(
      // One set of node-wide limits (slots, bandwidth budget) for every model's steps.
      { config, paths, store, log, blobStore, fetchPolicy, serving, reporter, limits: nodeLimitsFromConfig(config), onFetchBytes: opts.metrics && ((ns, name, n) => opts.metrics!.onDownloadBytes(ns, name, n)) },
      { retryDelayMs: opts.retryDelayMs ?? 60_000 },
    );
    // What a failure of a serving tree means is the runner's to decide.
    serving?.onServingFailure((t, err) => runner.servingFailed(t.namespace, t.name, { version: t.version, sha256: t.sha256 }, err));
    stops.push(() => runner.stop());
    const intake = new Intake({
      config,
      store,
      log,
      reporter,
      checkUrl: (url) => void checkUrl(url, fetchPolicy),
      kick: (ns, name, o) => runner.kick(ns, name, o),
      trusted,
      hello,
    });
    intakeRef = intake;
    const storeSize = new StoreSize({ paths, store });
    opts.metrics?.setSources({
      outboxDepth: () => store.outbox.depth(),
      models: () =>
        buildStatus({ store, serving, node: config.node.name, stateDir: paths.root, daemon: true }).models.map((m) => ({ ...m, modelName: m.spec?.modelName })),
      storeBytes: () => storeSize.bytes(),
      storeCapBytes: config.store.capBytes,
      extraText: serving && (() => serving!.hostMetrics()),
    });

    // The local admin API (the CLI's way in while the daemon runs). Not fatal: delivery and
    // serving go on without it, and the CLI then reports the daemon as unreachable.
    const admin = new AdminServer(
      { config, paths, store, blobStore, log, intake, serving, kick: (ns, name, o) => runner.kick(ns, name, o), daemon: true, configView: opts.configView },
      { socketPath: config.admin.socket, maxBodyBytes: config.limits.messageBytes, group: config.admin.socketGroup },
    );
    await admin.listen().then(
      () => stops.push(() => admin.close()),
      (err: Error) => log.error({ err: err.message, socket: config.admin.socket }, 'admin API not available'),
    );

    // Serve what is on disk first, without waiting for the cloud.
    runner.kickAll();
    link.start();
    stops.push(() => link.stop());

    return { config, paths, store, log, blobStore, serving, link, reporter, runner, intake, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
