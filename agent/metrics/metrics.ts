import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StatusContent } from '../../shared/index.js';
import { StatusTracker } from './status-tracker.js';

// The agent's Prometheus metrics, on a Registry of its own (never prom-client's global one, so
// tests and the controller in the same process do not mix). Parts report through the small
// methods below; gauges that mirror state (outbox depth, models, the store) are read on scrape.
//
// Labels: every series about a model has `namespace` and `name` (the resource), so any two join
// on them; the info series and the gateway's add `model`, the serving name (spec.modelName) the
// gateway's URL uses, which may differ from `name`.

/** One model as the scrape sees it (from the status builder, the same `modeld status` shows). */
export interface ModelSeries {
  namespace: string;
  name: string;
  /** The serving name (spec.modelName): the gateway's path, often not the resource's name. */
  modelName?: string;
  phase: string;
  servingVersion?: string;
  targetVersion?: string;
  replicas: number;
  readyReplicas: number;
}

export interface MetricsSources {
  outboxDepth?: () => number;
  models?: () => ModelSeries[];
  storeBytes?: () => Promise<number>;
  storeCapBytes?: number;
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
    // The models are read once per scrape, before any series is collected, for all the gauges
    // made from them. Every model's counters exist from its first scrape (at 0), so rate() and
    // increase() see the first event, and a dashboard finds the series before anything happened.
    let scraped: ModelSeries[] = [];
    const collectAll = this.registry.metrics.bind(this.registry);
    this.registry.metrics = async () => {
      scraped = this.sources.models?.() ?? [];
      for (const m of scraped) for (const c of this.perModelCounters()) c.inc({ namespace: m.namespace, name: m.name }, 0);
      return collectAll();
    };
    new Gauge({
      name: 'modeld_models',
      help: 'Models known to the agent, by phase.',
      labelNames: ['phase'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of scraped) this.inc({ phase: m.phase });
      },
    });
    const modelLabels = (m: ModelSeries) => ({ namespace: m.namespace, name: m.name, model: m.modelName ?? m.name });
    new Gauge({
      name: 'modeld_model_info',
      help: 'One per model (always 1): its phase, the version serving and the version its spec targets.',
      labelNames: ['namespace', 'name', 'model', 'phase', 'serving_version', 'target_version'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of scraped) this.set({ ...modelLabels(m), phase: m.phase, serving_version: m.servingVersion ?? '', target_version: m.targetVersion ?? '' }, 1);
      },
    });
    new Gauge({
      name: 'modeld_model_ready_replicas',
      help: 'Runtime instances of the model ready to take requests.',
      labelNames: ['namespace', 'name', 'model'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of scraped) this.set(modelLabels(m), m.readyReplicas);
      },
    });
    new Gauge({
      name: 'modeld_model_desired_replicas',
      help: 'Runtime instances the spec asks for (spec.replicas).',
      labelNames: ['namespace', 'name', 'model'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of scraped) this.set(modelLabels(m), m.replicas);
      },
    });
    new Gauge({
      name: 'modeld_store_bytes',
      help: 'Bytes in the store: verified archives and installed versions (what gc counts against its cap).',
      registers: [this.registry],
      async collect() {
        this.set((await self.sources.storeBytes?.()) ?? 0);
      },
    });
    new Gauge({
      name: 'modeld_store_cap_bytes',
      help: 'store.capBytes: gc keeps the store under this.',
      registers: [this.registry],
      collect() {
        this.set(self.sources.storeCapBytes ?? 0);
      },
    });
    new Gauge({ name: 'modeld_info', help: 'Agent version and node name.', labelNames: ['version', 'node'] as const, registers: [this.registry] }).set(
      { version: opts.agentVersion ?? 'unknown', node: opts.node ?? 'unknown' },
      1,
    );
    this.brokerConnected.set(0);
    this.hostRestarts.inc(0);
    for (const origin of ['uncaughtException', 'unhandledRejection']) this.escapedErrors.inc({ origin }, 0);
    if (opts.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named like counters (promtool: non-counter metrics should not have "_total"); the
      // same counts are in nodejs_active_handles, nodejs_active_requests, nodejs_active_resources.
      for (const misnamed of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(misnamed);
    }
  }

  private perModelCounters() {
    return [this.downloadBytes, this.digestFailures, this.switches, this.rollbacks, this.runtimeRestarts];
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
