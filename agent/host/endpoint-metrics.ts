import type { Registry } from 'prom-client';
import type { RequestLabels } from '../runtime/gateway.js';

// The node endpoint's request metrics, counted on the request path with a few array writes and
// turned into Prometheus series only when scraped. prom-client's Counter.inc and Histogram.observe
// hash their labels on every call (1-2 µs each, measured): at 10,000 requests/s of a small model
// that was a tenth of the host's CPU time per request.

export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** More series than this are not created (each label set is a model the host routes to). */
const MAX_SERIES = 10_000;

/** One label set's counts: per HTTP status, and the latency histogram. */
export class Series {
  readonly codes = new Map<number, number>();
  /** Per bucket (not cumulative); the last one is +Inf. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  constructor(readonly labels: RequestLabels) {}

  observe(status: number, seconds: number): void {
    this.codes.set(status, (this.codes.get(status) ?? 0) + 1);
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    this.buckets[i]++;
    this.sum += seconds;
    this.count++;
  }
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  /** Labels after `labels` (prom-client's histograms put `le` first this way). */
  sharedLabels?: Record<string, string>;
  metricName?: string;
}

export class EndpointMetrics {
  private readonly series = new Map<string, Series>();
  /** Per route object: its series, found without building a key on every request. */
  private readonly byTarget = new WeakMap<object, Series>();

  constructor(registry: Registry) {
    const self = this;
    // prom-client reads any object with name, help, type and get() (Registry.getMetricsAsString).
    const custom = (name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValue[]) => ({
      name,
      help,
      type,
      aggregator: 'sum' as const,
      get: async () => ({ name, help, type, aggregator: 'sum' as const, values: values() }),
      reset() {
        self.series.clear();
      },
    });
    registry.registerMetric(
      custom('modeld_gateway_requests_total', 'Requests the node endpoint routed to a model, by HTTP status.', 'counter', () =>
        [...this.series.values()].flatMap((s) => [...s.codes].map(([code, value]) => ({ value, labels: { ...s.labels, code: String(code) } }))),
      ) as never,
    );
    registry.registerMetric(
      custom('modeld_gateway_request_duration_seconds', 'Node endpoint request time per model, until the response is sent.', 'histogram', () =>
        [...this.series.values()].flatMap((s) => {
          const out: MetricValue[] = [];
          let cumulative = 0;
          LATENCY_BUCKETS.forEach((le, i) => {
            cumulative += s.buckets[i];
            out.push({ metricName: 'modeld_gateway_request_duration_seconds_bucket', value: cumulative, labels: { le }, sharedLabels: { ...s.labels } });
          });
          out.push({ metricName: 'modeld_gateway_request_duration_seconds_bucket', value: s.count, labels: { le: '+Inf' }, sharedLabels: { ...s.labels } });
          out.push({ metricName: 'modeld_gateway_request_duration_seconds_sum', value: s.sum, labels: {}, sharedLabels: { ...s.labels } });
          out.push({ metricName: 'modeld_gateway_request_duration_seconds_count', value: s.count, labels: {}, sharedLabels: { ...s.labels } });
          return out;
        }),
      ) as never,
    );
  }

  /** One request to `target` (a route object: its series is found once) answered with `status` after `seconds`. */
  observe(target: { readonly namespace: string; readonly name: string; readonly modelName: string }, status: number, seconds: number): void {
    let s = this.byTarget.get(target);
    if (!s) {
      const key = `${target.namespace}\0${target.name}\0${target.modelName}`;
      s = this.series.get(key);
      if (!s) {
        if (this.series.size >= MAX_SERIES) return;
        s = new Series({ namespace: target.namespace, name: target.name, model: target.modelName });
        this.series.set(key, s);
      }
      this.byTarget.set(target, s);
    }
    s.observe(status, seconds);
  }
}
