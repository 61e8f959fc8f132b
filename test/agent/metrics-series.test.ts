import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { inferenceModel, runCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { inferX, makeModelArchive } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { parsePromText, sampleValue, type Family } from '../helpers/prom-text.js';
import { waitFor } from '../helpers/wait.js';

// The series a fleet joins and graphs, from a live daemon's /metrics: every per-model series is
// labelled namespace and name (the gateway's and the info series add model, the serving name,
// which differs from the resource's name here); an info series with the serving and target
// version and the phase; the store's bytes and cap. Prometheus's own linter (promtool, Debian's
// `prometheus` package) passes the exposition, and every series the Grafana dashboard in
// deploy/grafana queries is there, with the labels the queries use.

const ROOT = resolve(import.meta.dirname, '../..');
let work: string;
let daemon: AgentProcess | undefined;
let metricsText = '';
let fams: Map<string, Family>;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-series-'));
  const gatewayPort = await freePort();
  const metricsPort = await freePort();
  const config = {
    node: { name: 'edge-1', address: '127.0.0.1' },
    broker: { url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMs: 60_000 },
    stateDir: join(work, 'state'),
    gateway: { bind: '127.0.0.1', port: gatewayPort },
    admin: { socket: join(work, 'admin.sock'), metricsBind: '127.0.0.1', metricsPort },
    store: { capBytes: '1GiB' },
  };
  const configFile = writeConfig(config);
  const a = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 2, b: 1 });
  expect((await runCli(configFile, ['seed', a.path, '--name', 'lin', '--version', '1'])).code).toBe(0);
  const doc = inferenceModel('lin', [{ version: '1', sha256: a.sha256 }], { targetVersion: '1' });
  doc.spec.modelName = 'linear';
  expect((await runCli(configFile, ['apply', '-f', writeYaml(join(work, 'lin.yaml'), doc)])).code).toBe(0);
  daemon = startAgentProcess(config);
  await waitFor(async () => JSON.parse((await runCli(configFile, ['get', 'lin', '-o', 'json'])).stdout || '{}').status?.phase === 'Serving', 120_000, 'lin serving');
  expect((await inferX(`http://127.0.0.1:${gatewayPort}`, 'linear', [1, 2])).status).toBe(200);
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  metricsText = await res.text();
  fams = parsePromText(metricsText);
}, 240_000);

afterAll(async () => {
  await daemon?.end();
  rmSync(work, { recursive: true, force: true });
});

const lin = { namespace: 'default', name: 'lin' };

describe('per-model series', () => {
  it('an info series names the serving and target version and the phase', () => {
    expect(sampleValue(fams, 'modeld_model_info', { ...lin, model: 'linear', serving_version: '1', target_version: '1', phase: 'Serving' })).toBe(1);
    expect(sampleValue(fams, 'modeld_model_ready_replicas', { ...lin, model: 'linear' })).toBe(1);
    expect(sampleValue(fams, 'modeld_model_desired_replicas', { ...lin, model: 'linear' })).toBe(1);
  });

  it('the gateway series carry namespace, name and the serving name', () => {
    expect(sampleValue(fams, 'modeld_gateway_requests_total', { ...lin, model: 'linear', code: '200' })).toBe(1);
    expect(sampleValue(fams, 'modeld_gateway_request_duration_seconds_count', { ...lin, model: 'linear' })).toBe(1);
  });

  it('every series about a model has namespace and name', () => {
    for (const f of fams.values()) {
      for (const s of f.samples) {
        if ('model' in s.labels || 'name' in s.labels || 'namespace' in s.labels) expect({ series: s.name, labels: Object.keys(s.labels) }).toMatchObject({ labels: expect.arrayContaining(['namespace', 'name']) });
      }
    }
  });

  it("the store's bytes and its cap", () => {
    expect(sampleValue(fams, 'modeld_store_cap_bytes')).toBe(1024 ** 3);
    // The seeded archive and its unpacked tree.
    expect(sampleValue(fams, 'modeld_store_bytes')).toBeGreaterThan(readFileSync(join(work, 'lin-1.tar.gz')).length);
  });
});

describe('Prometheus conventions', () => {
  it('promtool check metrics finds nothing to complain about', () => {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: metricsText, encoding: 'utf8' });
    expect(r.error, 'promtool is in Debian package prometheus (scripts/test-deps.sh installs it)').toBeUndefined();
    expect({ code: r.status, out: r.stdout + r.stderr }).toEqual({ code: 0, out: '' });
  });
});

describe('the Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/modeld-node.json'), 'utf8'));
  const queries: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'expr' || (k === 'query' && typeof x === 'string' && x.includes('('))) && typeof x === 'string') queries.push(x);
        else walk(x);
      }
    }
  };
  walk(dashboard);
  // Added by Prometheus when it scrapes, not in /metrics itself.
  const SCRAPE_LABELS = ['instance', 'job'];

  it('is current with scripts/gen-dashboard.ts', () => {
    const before = readFileSync(join(ROOT, 'deploy/grafana/modeld-node.json'), 'utf8');
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/gen-dashboard.ts')], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(ROOT, 'deploy/grafana/modeld-node.json'), 'utf8')).toBe(before);
  });

  it('queries only series a live /metrics has, by labels they carry', () => {
    expect(queries.length).toBeGreaterThan(10);
    for (const q of queries) {
      const names = [...new Set(q.match(/\b(?:modeld|process|nodejs)_[a-zA-Z0-9_]+\b/g) ?? [])];
      expect({ q, names }).toMatchObject({ names: expect.arrayContaining([expect.any(String)]) });
      const labels = new Set(SCRAPE_LABELS);
      for (const n of names) {
        const samples = [...fams.values()].flatMap((f) => f.samples).filter((s) => s.name === n);
        expect({ q, series: n, present: samples.length > 0 }).toEqual({ q, series: n, present: true });
        for (const s of samples) for (const l of Object.keys(s.labels)) labels.add(l);
      }
      const used = [
        ...[...q.matchAll(/\b(?:by|on|group_left|group_right)\s*\(([^)]*)\)/g)].flatMap((m) => m[1].split(',').map((s) => s.trim()).filter(Boolean)),
        ...[...q.matchAll(/[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]),
        ...[...q.matchAll(/label_values\([^,]+,\s*([a-zA-Z_][a-zA-Z0-9_]*)\)/g)].map((m) => m[1]),
      ];
      for (const l of used) expect({ q, label: l, known: labels.has(l) }).toEqual({ q, label: l, known: true });
    }
  });
});
