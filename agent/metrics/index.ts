export { AgentMetrics, type MetricsSources } from './metrics.js';
export { startMetricsServer, type MetricsServer } from './server.js';
export { StatusTracker, type TrackedEvent } from './status-tracker.js';
