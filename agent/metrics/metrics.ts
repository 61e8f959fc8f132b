import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StatusContent } from '../../shared/index.js';
import { StatusTracker } from './status-tracker.js';

// The agent's Prometheus metrics, on a Registry of its own (never prom-client's global one, so
// tests and the controller in the same process do not mix). Parts report through the small
// methods below; gauges that mirror state (outbox depth, models by phase) are read on scrape.

export interface MetricsSources {
  outboxDepth?: () => number;
  modelPhases?: () => Array<{ phase?: string | null }>;
  /** Exposition text of another registry appended on scrape: the runtime host's node-endpoint series. */
  extraText?: () => Promise<string>;
}

const DURATION_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600];

export class AgentMetrics {
  readonly registry = new Registry();
  private sources: MetricsSources = {};
  private readonly tracker: StatusTracker;

  readonly downloadBytes = new Counter({ name: 'modeld_download_bytes_total', help: 'Bytes of model archives received over the network.', labelNames: ['namespace', 'name'] as const, registers: [this.registry] });
  readonly downloadDuration = new Histogram({ name: 'modeld_download_duration_seconds', help: 'Time from the start of a download to its verified digest.', buckets: DURATION_BUCKETS, registers: [this.registry] });
  readonly installDuration = new Histogram({ name: 'modeld_install_duration_seconds', help: 'Time to unpack a verified archive and promote it into versions/.', buckets: DURATION_BUCKETS, registers: [this.registry] });
  readonly digestFailures = new Counter({ name: 'modeld_digest_failures_total', help: 'Downloads discarded because their sha256 did not match the manifest.', labelNames: ['namespace', 'name'] as const, registers: [this.registry] });
  readonly switches = new Counter({ name: 'modeld_switches_total', help: 'Changes of the serving version (rollbacks included).', labelNames: ['namespace', 'name'] as const, registers: [this.registry] });
  readonly rollbacks = new Counter({ name: 'modeld_rollbacks_total', help: 'Switches back to the previous version (automatic or by `modeld rollback`).', labelNames: ['namespace', 'name'] as const, registers: [this.registry] });
  readonly runtimeRestarts = new Counter({ name: 'modeld_runtime_restarts_total', help: 'Runtime instances restarted after an unexpected exit or a start timeout.', labelNames: ['namespace', 'name'] as const, registers: [this.registry] });
  // The node endpoint's series (modeld_gateway_requests_total, modeld_gateway_request_duration_seconds)
  // are the runtime host's (agent/host/runtime-host.ts): appended on scrape through extraText.
  readonly hostRestarts = new Counter({ name: 'modeld_host_restarts_total', help: 'Restarts of the runtime host seen by the agent (it restores every model).', registers: [this.registry] });
  readonly escapedErrors = new Counter({ name: 'modeld_escaped_errors_total', help: 'Errors that escaped every handler (logged with their stack; the daemon kept running), by origin.', labelNames: ['origin'] as const, registers: [this.registry] });
  readonly brokerConnected = new Gauge({ name: 'modeld_broker_connected', help: '1 while the MQTT link to the broker is up.', registers: [this.registry] });

  constructor(opts: { processMetrics?: boolean; agentVersion?: string; node?: string; now?: () => number } = {}) {
    this.tracker = new StatusTracker(opts.now);
    const self = this;
    new Gauge({
      name: 'modeld_outbox_depth',
      help: 'Statuses waiting in the durable outbox for the broker.',
      registers: [this.registry],
      collect() {
        this.set(self.sources.outboxDepth?.() ?? 0);
      },
    });
    new Gauge({
      name: 'modeld_models',
      help: 'Models known to the agent, by phase.',
      labelNames: ['phase'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of self.sources.modelPhases?.() ?? []) this.inc({ phase: m.phase ?? 'Unknown' });
      },
    });
    new Gauge({ name: 'modeld_info', help: 'Agent version and node name.', labelNames: ['version', 'node'] as const, registers: [this.registry] }).set(
      { version: opts.agentVersion ?? 'unknown', node: opts.node ?? 'unknown' },
      1,
    );
    this.brokerConnected.set(0);
    this.hostRestarts.inc(0);
    for (const origin of ['uncaughtException', 'unhandledRejection']) this.escapedErrors.inc({ origin }, 0);
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** State read on every scrape. */
  setSources(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** Every status the Reporter makes: phase transitions become durations, failures, switches. Never throws. */
  onStatus(status: StatusContent): void {
    try {
      for (const e of this.tracker.observe(status)) {
        const l = { namespace: e.namespace, name: e.name };
        if (e.kind === 'downloaded') this.downloadDuration.observe(e.seconds);
        else if (e.kind === 'installed') this.installDuration.observe(e.seconds);
        else if (e.kind === 'digestFailure') this.digestFailures.inc(l);
        else {
          this.switches.inc(l);
          if (e.rollback) this.rollbacks.inc(l);
        }
      }
    } catch {
      // metrics must never break reporting
    }
  }

  onDownloadBytes(namespace: string, name: string, bytes: number): void {
    this.downloadBytes.inc({ namespace, name }, bytes);
  }

  onRuntimeRestarts(namespace: string, name: string, count: number): void {
    this.runtimeRestarts.inc({ namespace, name }, count);
  }

  onHostRestart(): void {
    this.hostRestarts.inc();
  }

  /** The whole exposition: this registry, then the runtime host's (left out when it does not answer). */
  async text(): Promise<string> {
    const own = await this.registry.metrics();
    const extra = await this.sources.extraText?.().catch(() => '');
    return extra ? `${own}${own.endsWith('\n') ? '' : '\n'}${extra}` : own;
  }

  onEscapedError(origin: string): void {
    this.escapedErrors.inc({ origin });
  }

  onBrokerConnection(connected: boolean): void {
    this.brokerConnected.set(connected ? 1 : 0);
  }
}
