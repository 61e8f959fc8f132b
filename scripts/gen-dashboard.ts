// Writes deploy/grafana/modeld-node.json, the Grafana dashboard for modeld's /metrics (one
// file of panels here is easier to read and review than Grafana's JSON). Run:
//   npx tsx scripts/gen-dashboard.ts
// test/agent/metrics-series.test.ts checks that every series a panel queries is in a live /metrics.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

const DS = { type: 'prometheus', uid: '${datasource}' };
const SEL = 'instance=~"$instance"';
const MODEL = `${SEL}, namespace=~"$namespace"`;

type Panel = { title: string; type: 'timeseries' | 'stat' | 'table'; unit?: string; targets: Array<{ expr: string; legend?: string; instant?: boolean }>; w?: number; h?: number; description?: string };

const rows: Array<{ title: string; panels: Panel[] }> = [
  {
    title: 'Node',
    panels: [
      { title: 'Agent', type: 'table', w: 8, description: 'modeld version per node', targets: [{ expr: `max by (instance, node, version) (modeld_info{${SEL}})`, instant: true }] },
      { title: 'Broker connected', type: 'stat', w: 4, targets: [{ expr: `min(modeld_broker_connected{${SEL}})` }] },
      { title: 'Statuses waiting in the outbox', type: 'stat', w: 4, targets: [{ expr: `sum(modeld_outbox_depth{${SEL}})` }] },
      { title: 'Errors that escaped every handler (1h)', type: 'stat', w: 4, targets: [{ expr: `sum(increase(modeld_escaped_errors_total{${SEL}}[1h]))` }] },
      { title: 'Resident memory', type: 'timeseries', unit: 'bytes', w: 4, targets: [{ expr: `process_resident_memory_bytes{${SEL}}`, legend: '{{instance}}' }] },
      { title: 'Models by phase', type: 'timeseries', w: 12, targets: [{ expr: `sum by (phase) (modeld_models{${SEL}})`, legend: '{{phase}}' }] },
      {
        title: 'Store: used and cap',
        type: 'timeseries',
        unit: 'bytes',
        w: 12,
        targets: [
          { expr: `modeld_store_bytes{${SEL}}`, legend: 'used {{instance}}' },
          { expr: `modeld_store_cap_bytes{${SEL}}`, legend: 'cap {{instance}}' },
        ],
      },
    ],
  },
  {
    title: 'Models',
    panels: [
      {
        title: 'Models: phase, serving and target version',
        type: 'table',
        w: 24,
        targets: [{ expr: `max by (instance, namespace, name, model, phase, serving_version, target_version) (modeld_model_info{${MODEL}})`, instant: true }],
      },
      {
        title: 'Ready replicas',
        type: 'timeseries',
        w: 12,
        targets: [
          { expr: `modeld_model_ready_replicas{${MODEL}}`, legend: '{{namespace}}/{{name}} ready' },
          { expr: `modeld_model_desired_replicas{${MODEL}}`, legend: '{{namespace}}/{{name}} desired' },
        ],
      },
      {
        title: 'Switches and rollbacks (1h)',
        type: 'timeseries',
        w: 12,
        targets: [
          { expr: `sum by (namespace, name) (increase(modeld_switches_total{${MODEL}}[1h]))`, legend: '{{namespace}}/{{name}} switches' },
          { expr: `sum by (namespace, name) (increase(modeld_rollbacks_total{${MODEL}}[1h]))`, legend: '{{namespace}}/{{name}} rollbacks' },
        ],
      },
      { title: 'Download rate', type: 'timeseries', unit: 'Bps', w: 8, targets: [{ expr: `sum by (namespace, name) (rate(modeld_download_bytes_total{${MODEL}}[5m]))`, legend: '{{namespace}}/{{name}}' }] },
      { title: 'Digest failures (1h)', type: 'timeseries', w: 8, targets: [{ expr: `sum by (namespace, name) (increase(modeld_digest_failures_total{${MODEL}}[1h]))`, legend: '{{namespace}}/{{name}}' }] },
      { title: 'Runtime restarts (1h)', type: 'timeseries', w: 8, targets: [{ expr: `sum by (namespace, name) (increase(modeld_runtime_restarts_total{${MODEL}}[1h]))`, legend: '{{namespace}}/{{name}}' }] },
      {
        title: 'Download and install time (p90)',
        type: 'timeseries',
        unit: 's',
        w: 24,
        targets: [
          { expr: `histogram_quantile(0.9, sum by (le) (rate(modeld_download_duration_seconds_bucket{${SEL}}[1h])))`, legend: 'download' },
          { expr: `histogram_quantile(0.9, sum by (le) (rate(modeld_install_duration_seconds_bucket{${SEL}}[1h])))`, legend: 'install' },
        ],
      },
    ],
  },
  {
    title: 'Serving',
    panels: [
      {
        title: 'Requests per second, by serving version',
        type: 'timeseries',
        unit: 'reqps',
        w: 12,
        description: 'The gateway series and the info series share namespace and name: the join adds the version serving.',
        targets: [
          {
            expr: `sum by (namespace, name) (rate(modeld_gateway_requests_total{${MODEL}}[5m])) * on (namespace, name) group_left (serving_version) max by (namespace, name, serving_version) (modeld_model_info{${MODEL}})`,
            legend: '{{namespace}}/{{name}} v{{serving_version}}',
          },
        ],
      },
      { title: 'Errors per second (5xx)', type: 'timeseries', unit: 'reqps', w: 12, targets: [{ expr: `sum by (namespace, name, code) (rate(modeld_gateway_requests_total{${MODEL}, code=~"5.."}[5m]))`, legend: '{{namespace}}/{{name}} {{code}}' }] },
      {
        title: 'Latency',
        type: 'timeseries',
        unit: 's',
        w: 24,
        targets: [
          { expr: `histogram_quantile(0.5, sum by (namespace, name, le) (rate(modeld_gateway_request_duration_seconds_bucket{${MODEL}}[5m])))`, legend: '{{namespace}}/{{name}} p50' },
          { expr: `histogram_quantile(0.99, sum by (namespace, name, le) (rate(modeld_gateway_request_duration_seconds_bucket{${MODEL}}[5m])))`, legend: '{{namespace}}/{{name}} p99' },
        ],
      },
    ],
  },
];

let id = 0;
let y = 0;
const panels: unknown[] = [];
for (const row of rows) {
  panels.push({ id: ++id, type: 'row', title: row.title, collapsed: false, gridPos: { x: 0, y: y++, w: 24, h: 1 }, panels: [] });
  let x = 0;
  for (const p of row.panels) {
    const w = p.w ?? 12;
    const h = p.h ?? (p.type === 'stat' ? 4 : 8);
    if (x + w > 24) {
      x = 0;
      y += 8;
    }
    panels.push({
      id: ++id,
      type: p.type,
      title: p.title,
      ...(p.description ? { description: p.description } : {}),
      datasource: DS,
      gridPos: { x, y, w, h },
      fieldConfig: { defaults: { ...(p.unit ? { unit: p.unit } : {}) }, overrides: [] },
      options: p.type === 'table' ? { showHeader: true } : {},
      targets: p.targets.map((t, i) => ({
        datasource: DS,
        refId: String.fromCharCode(65 + i),
        expr: t.expr,
        ...(t.legend ? { legendFormat: t.legend } : {}),
        ...(t.instant ? { instant: true, range: false, format: 'table' } : {}),
      })),
    });
    x += w;
  }
  y += 8;
}

const dashboard = {
  title: 'modeld node',
  uid: 'modeld-node',
  description: "modeld's /metrics: models, versions, store, gateway. Per-model series carry namespace and name (and model, the serving name, where it matters).",
  tags: ['modeld', 'kubeedge'],
  schemaVersion: 39,
  version: 1,
  editable: true,
  time: { from: 'now-6h', to: 'now' },
  refresh: '30s',
  templating: {
    list: [
      { name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Data source' },
      { name: 'instance', type: 'query', datasource: DS, query: 'label_values(modeld_info, instance)', refresh: 2, multi: true, includeAll: true, label: 'Node' },
      { name: 'namespace', type: 'query', datasource: DS, query: 'label_values(modeld_model_info{instance=~"$instance"}, namespace)', refresh: 2, multi: true, includeAll: true, label: 'Namespace' },
    ],
  },
  panels,
};

writeFileSync(resolve(import.meta.dirname, '../deploy/grafana/modeld-node.json'), JSON.stringify(dashboard, null, 2) + '\n');
