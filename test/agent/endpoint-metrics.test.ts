import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { EndpointMetrics } from '../../agent/host/endpoint-metrics.js';

// The node endpoint's request metrics: counted with plain arithmetic per request, exported in
// Prometheus text as prom-client's own Counter and Histogram would be.

describe('endpoint metrics', () => {
  it('counts per status and per latency bucket, cumulative on export, one series per model resource', async () => {
    const registry = new Registry();
    const m = new EndpointMetrics(registry);
    const lin = { namespace: 'default', name: 'lin', modelName: 'lin' };
    m.observe(lin, 200, 0.0004);
    m.observe(lin, 200, 0.003);
    m.observe(lin, 400, 40);
    // A new route object for the same resource (a switch): the same series.
    m.observe({ ...lin }, 200, 0.0004);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE modeld_gateway_requests_total counter');
    expect(text).toContain('modeld_gateway_requests_total{namespace="default",name="lin",model="lin",code="200"} 3');
    expect(text).toContain('modeld_gateway_requests_total{namespace="default",name="lin",model="lin",code="400"} 1');
    expect(text).toContain('# TYPE modeld_gateway_request_duration_seconds histogram');
    expect(text).toContain('modeld_gateway_request_duration_seconds_bucket{le="0.0005",namespace="default",name="lin",model="lin"} 2');
    expect(text).toContain('modeld_gateway_request_duration_seconds_bucket{le="0.0025",namespace="default",name="lin",model="lin"} 2');
    expect(text).toContain('modeld_gateway_request_duration_seconds_bucket{le="0.005",namespace="default",name="lin",model="lin"} 3');
    expect(text).toContain('modeld_gateway_request_duration_seconds_bucket{le="30",namespace="default",name="lin",model="lin"} 3');
    expect(text).toContain('modeld_gateway_request_duration_seconds_bucket{le="+Inf",namespace="default",name="lin",model="lin"} 4');
    expect(text).toContain('modeld_gateway_request_duration_seconds_count{namespace="default",name="lin",model="lin"} 4');
    expect(text).toMatch(/modeld_gateway_request_duration_seconds_sum\{namespace="default",name="lin",model="lin"\} 40\.003/);
  });
});
