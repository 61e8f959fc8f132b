export { AgentMetrics, type MetricsSources, type ModelSeries } from './metrics.js';
export { StoreSize } from './store-size.js';
export { startMetricsServer, type MetricsServer } from './server.js';
export { StatusTracker, type TrackedEvent } from './status-tracker.js';
