import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree } from '../helpers/process-tree.js';
import { waitFor } from '../helpers/wait.js';

// `modeld doctor` as a person runs it: a child process, its lines, its exit code.

const ROOT = resolve(import.meta.dirname, '../..');
let work: string;
let broker: Broker;
let agent: AgentProcess | undefined;
let squatter: Server | undefined;

beforeAll(async () => {
  broker = await startMosquitto();
});
afterAll(async () => {
  await broker.close();
});
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'modeld-doctor-'));
});
afterEach(async () => {
  await agent?.end();
  agent = undefined;
  await new Promise<void>((r) => (squatter ? squatter.close(() => r()) : r()));
  squatter = undefined;
  rmSync(work, { recursive: true, force: true });
});

function doctor(config: unknown, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = join(work, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, typeof config === 'string' ? config : stringify(config));
  const { child } = spawnTree(process.execPath, ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), '--config', file, 'doctor', '--timeout', '20000', ...args], {
    cwd: ROOT,
    env: { ...process.env, MODELD_CONFIG: '' },
  });
  return new Promise((res) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => res({ code, stdout, stderr }));
  });
}

const line = (out: string, name: string) => out.split('\n').find((l) => l.split(/\s+/)[1] === name) ?? '';

async function goodConfig(over: Record<string, unknown> = {}) {
  return {
    node: { name: 'edge-doc', address: '127.0.0.1' },
    broker: { url: broker.url },
    stateDir: join(work, 'state'),
    gateway: { bind: '127.0.0.1', port: await freePort() },
    admin: { socket: join(work, 'admin.sock'), metricsBind: '127.0.0.1', metricsPort: await freePort() },
    ...over,
  };
}

describe('modeld doctor', () => {
  it('passes on a good node: every line ok or warn, exit 0', async () => {
    const r = await doctor(await goodConfig());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(line(r.stdout, 'config')).toMatch(/^ok\s+config\s+.*is valid \(node edge-doc\)/);
    expect(line(r.stdout, 'broker')).toMatch(/^ok\s+broker\s+mqtt:\/\/127\.0\.0\.1:\d+ accepted a connection/);
    expect(line(r.stdout, 'state-dir')).toMatch(/^warn\s+state-dir\s+.*will be created/);
    expect(line(r.stdout, 'disk-space')).toMatch(/^(ok|warn)\s+disk-space\s+.*free of/);
    expect(line(r.stdout, 'port:gateway')).toMatch(/^ok\s+port:gateway\s+.* is free/);
    expect(line(r.stdout, 'edgecore')).toMatch(/^(ok|warn)\s+edgecore/);
    for (const l of r.stdout.trim().split('\n')) expect(l).toMatch(/^(ok|warn) /);
  });

  it('a bad config fails with the path of the bad key, and a non-zero exit', async () => {
    const r = await doctor({ ...(await goodConfig()), gateway: { port: 'eight thousand' }, fetch: { attempts: 0 } });
    expect(r.code).toBe(1);
    expect(line(r.stdout, 'config')).toMatch(/^fail\s+config\s+.*gateway\.port: /);
    expect(line(r.stdout, 'config')).toMatch(/fetch\.attempts: /);
    const unknown = await doctor({ ...(await goodConfig()), brokr: { url: 'x' } });
    expect(unknown.code).toBe(1);
    expect(line(unknown.stdout, 'config')).toMatch(/^fail\s+config\s+.*brokr/);
    const notYaml = await doctor('broker: [unclosed\n');
    expect(notYaml.code).toBe(1);
    expect(line(notYaml.stdout, 'config')).toMatch(/^fail\s+config\s+.*not valid YAML/);
  });

  it('an unreachable broker fails (within the timeout) and --json says which check', async () => {
    const dead = await freePort();
    const r = await doctor(await goodConfig({ broker: { url: `mqtt://127.0.0.1:${dead}` } }), ['--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; status: string; message: string }> };
    expect(report.ok).toBe(false);
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed.map((c) => c.name)).toEqual(['broker']);
    expect(failed[0].message).toMatch(new RegExp(`127\\.0\\.0\\.1:${dead} unreachable: .*ECONNREFUSED`));
  });

  it('a runtime command that is not installed fails; ports held by another program fail', async () => {
    squatter = createServer((s) => s.destroy());
    await new Promise<void>((r) => squatter!.listen(0, '127.0.0.1', () => r()));
    const taken = (squatter.address() as { port: number }).port;
    const cfg = await goodConfig({ runtimes: { triton: { command: ['tritonserver-not-installed', '--http-port', '{port}'] } } });
    cfg.gateway.port = taken;
    const r = await doctor(cfg);
    expect(r.code).toBe(1);
    expect(line(r.stdout, 'runtime:triton')).toMatch(/^fail\s+runtime:triton\s+.*"tritonserver-not-installed" not found or not executable on PATH/);
    expect(line(r.stdout, 'port:gateway')).toMatch(new RegExp(`^fail\\s+port:gateway\\s+127\\.0\\.0\\.1:${taken} is in use by another program`));
  });

  it('ports held by the running daemon are fine', async () => {
    const cfg = await goodConfig();
    agent = startAgentProcess(cfg);
    await waitFor(() => agent!.logs.some((l) => l.msg === 'modeld started'), 60_000, 'the daemon to start');
    const r = await doctor(cfg);
    expect(line(r.stdout, 'port:gateway')).toMatch(/held by the running modeld/);
    expect(line(r.stdout, 'port:metrics')).toMatch(/held by the running modeld/);
    expect(line(r.stdout, 'state-dir')).toMatch(/^ok\s+state-dir\s+.* is writable/);
    expect(r.code).toBe(0);
  });

  it('rejects a bad --timeout as a usage error', async () => {
    const r = await doctor(await goodConfig(), ['--timeout', 'soon']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--timeout must be a number/);
  });
});
