import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../agent/admin/status-view.js';
import type { ModelContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { expectOneLineError, inferenceModel, runCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { spawnTree } from '../helpers/process-tree.js';
import { waitFor } from '../helpers/wait.js';

// A local spec meets the cloud: the cloud's spec for the same model wins, the status says
// CloudOverridesLocal, local apply/delete of it are refused (ManagedByCloud), and `status
// --watch --json` follows the change as it happens.

const ROOT = resolve(import.meta.dirname, '../..');
const NODE = 'edge-1';
let work: string;
let broker: Broker;
let cloud: Cloud;
let daemon: AgentProcess | undefined;
let config: Record<string, unknown> & { stateDir: string };
let configFile: string;
const archives: Record<string, { path: string; sha256: string }> = {};

const cli = (...args: string[]) => runCli(configFile, args);
const status = async () => JSON.parse((await cli('status', '--json')).stdout) as StatusReport;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-cli-cloud-'));
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
  config = {
    node: { name: NODE },
    broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 },
    stateDir: join(work, 'state'),
    admin: { socket: join(work, 'admin.sock') },
  };
  configFile = writeConfig(config);
  archives['1'] = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 1, b: 0 });
  archives['2'] = await makeModelArchive(join(work, 'lin-2.tar.gz'), { w: 2, b: 0 });
  for (const v of ['1', '2']) expect((await cli('seed', archives[v].path, '--name', 'lin', '--version', v)).code).toBe(0);
});

afterAll(async () => {
  await daemon?.end();
  await cloud?.close();
  await broker?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('local and cloud specs for the same model', () => {
  it("the cloud's spec replaces the local one, and the status says so", async () => {
    const local = writeYaml(join(work, 'local.yaml'), inferenceModel('lin', [{ version: '1', sha256: archives['1'].sha256 }]));
    expect((await cli('apply', '-f', local)).code).toBe(0);
    const hellos = cloud.hellos.length;
    daemon = startAgentProcess(config, ['--no-serve']);
    await waitFor(() => cloud.hellos.length > hellos, 60_000, 'hello');
    await waitFor(async () => (await status()).models[0]?.phase === 'Installed', 120_000, 'the local spec installed');

    // Follow the change with --watch.
    const watcher = spawnTree(process.execPath, ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), '--config', configFile, 'status', '--watch', '--json', '--interval', '200'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const watch = watcher.child;
    const seen: StatusReport[] = [];
    let buffered = '';
    watch.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) seen.push(JSON.parse(l) as StatusReport);
    });
    try {
      await waitFor(() => seen.length > 0, 60_000, 'the first --watch document');
      expect(seen[0].models[0]).toMatchObject({ source: 'local', servingVersion: '1' });

      const content = inferenceModel('lin', [{ version: '2', sha256: archives['2'].sha256 }]) as unknown as ModelContent;
      await cloud.update(NODE, { metadata: { ...content.metadata, uid: 'uid-lin', generation: 1 }, spec: content.spec });
      await cloud.waitStatus((s) => s.name === 'lin' && s.reason === 'CloudOverridesLocal', { what: 'CloudOverridesLocal on the wire' });
      await waitFor(() => seen.some((r) => r.models[0]?.source === 'cloud' && r.models[0].servingVersion === '2'), 120_000, '--watch to show the cloud version');
      expect(seen.at(-1)!.models[0]).toMatchObject({ source: 'cloud', note: 'CloudOverridesLocal' });
    } finally {
      watch.kill('SIGINT');
    }
    expect((await watcher.exited).code).toBe(0);
    const table = await cli('status');
    expect(table.stdout).toMatch(/default\/lin\s+cloud\s+Installed\s+2\s+2\s+.*CloudOverridesLocal/);
  }, 300_000);

  it('local apply and delete of a cloud-managed model are refused', async () => {
    const local = writeYaml(join(work, 'local3.yaml'), inferenceModel('lin', [{ version: '1', sha256: archives['1'].sha256 }]));
    const apply = await cli('apply', '-f', local);
    expect(apply.code).toBe(1);
    expect(expectOneLineError(apply)).toBe('modeld: ManagedByCloud: default/lin is managed by the cloud; change or delete it there');
    const del = await cli('delete', 'lin');
    expect(del.code).toBe(1);
    expect(expectOneLineError(del)).toBe('modeld: ManagedByCloud: default/lin is managed by the cloud; delete it there');
    expect((await status()).models[0]).toMatchObject({ source: 'cloud', servingVersion: '2' });
  });

  it('a delete from the cloud removes the model; the earlier local spec does not come back', async () => {
    await cloud.remove(NODE, 'default', 'lin');
    await waitFor(async () => (await status()).models.length === 0, 60_000, 'the model to be removed');
  });
});
