import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../agent/admin/status-view.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { runCli, writeConfig } from '../helpers/modeld-cli.js';
import { inferX, makeModelArchive } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

// A node that never sees a cloud or a broker: archives seeded with `modeld seed`, the model
// deployed with `modeld apply`, served by real onnxruntime through the gateway; then an
// upgrade, `modeld rollback`, and a spec change that ends the hold. All through the CLI as a
// user runs it (child processes), the daemon a child process too.

let work: string;
let configFile: string;
let config: Record<string, unknown> & { stateDir: string };
let daemon: AgentProcess | undefined;
let gateway: string;
const archives: Record<string, { path: string; sha256: string }> = {};

const cli = (...args: string[]) => runCli(configFile, args);

/** The downloadURL points at a closed port: a seeded archive is never downloaded. */
function resource(versions: string[], targetVersion?: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'ai.kubeedge.io/v1alpha1',
    kind: 'InferenceModel',
    metadata: { name: 'lin', namespace: 'default' },
    spec: {
      modelName: 'lin',
      deployToLayer: 'edge',
      frameworkType: 'onnx',
      manifest: versions.map((v) => ({ version: v, downloadURL: `http://127.0.0.1:9/never/${v}.tar.gz`, sha256sum: archives[v].sha256 })),
      ...(targetVersion ? { targetVersion } : {}),
      ...extra,
    },
  };
}

function writeSpec(name: string, doc: unknown): string {
  const file = join(work, name);
  writeFileSync(file, stringify(doc));
  return file;
}

async function status(): Promise<StatusReport> {
  const r = await cli('status', '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusReport;
}

async function waitServing(version: string, held?: string) {
  await waitFor(
    async () => {
      const m = (await status()).models.find((x) => x.name === 'lin');
      return m?.phase === 'Serving' && m.servingVersion === version && m.readyReplicas === 1 && m.heldVersion === held;
    },
    120_000,
    `lin serving version ${version}${held ? ` (held)` : ''}`,
  );
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-cli-'));
  const port = await freePort();
  gateway = `http://127.0.0.1:${port}`;
  config = {
    node: { name: 'edge-1', address: '127.0.0.1' },
    // Nothing listens there: no broker at all.
    broker: { url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMs: 60_000 },
    stateDir: join(work, 'state'),
    gateway: { bind: '127.0.0.1', port },
    admin: { socket: join(work, 'run', 'admin.sock') },
    serving: { startTimeoutMs: 60_000, drainTimeoutMs: 5000, stopGraceMs: 3000 },
  };
  configFile = writeConfig(config);
  archives['1'] = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 2, b: 1 });
  archives['2'] = await makeModelArchive(join(work, 'lin-2.tar.gz'), { w: 3, b: 0 });
});

afterAll(async () => {
  await daemon?.end();
  rmSync(work, { recursive: true, force: true });
});

describe('modeld CLI on a node with no cloud and no broker', () => {
  it('seeds an archive without a daemon and prints its digest', async () => {
    const r = await cli('seed', archives['1'].path, '--name', 'lin', '--version', '1', '--sha256', archives['1'].sha256);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${archives['1'].sha256}  ${archives['1'].path}\n`);
    expect(r.stderr).toMatch(/stored .*matches --sha256/);
  });

  it('applies a local spec without a daemon; status reads the store', async () => {
    const r = await cli('apply', '-f', writeSpec('v1.yaml', resource(['1'], '1')));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('default/lin created (generation 1)\n');
    expect(r.stderr).toMatch(/daemon not running/);
    const s = await status();
    expect(s.daemon).toBe(false);
    expect(s.models).toMatchObject([{ namespace: 'default', name: 'lin', source: 'local', phase: 'Pending', targetVersion: '1', generation: 1 }]);
  });

  it('the daemon starts, finds the spec and the seeded archive, and serves it through the gateway', async () => {
    daemon = startAgentProcess(config);
    await waitServing('1');
    const s = await status();
    expect(s.daemon).toBe(true);
    expect(s.models[0]).toMatchObject({ url: `http://127.0.0.1:${new URL(gateway).port}/v2/models/lin`, replicas: 1, readyReplicas: 1 });
    const out = await inferX(gateway, 'lin', [1, 2]);
    expect(out.body).toMatchObject({ model_version: '1', outputs: [{ data: [3, 5] }] });
    // Only one version so far: nothing to roll back to.
    const none = await cli('rollback', 'lin');
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('modeld: NoRollbackVersion: default/lin has no previous version to roll back to; name one with --to\n');
    // The human table says the same.
    const table = await cli('status');
    expect(table.stdout).toMatch(/default\/lin\s+local\s+Serving\s+1\s+1\s+1\/1\s+native\s+http:\/\/127\.0\.0\.1:\d+\/v2\/models\/lin/);
  });

  it('seeds through the running daemon and upgrades with apply', async () => {
    const seeded = await cli('seed', archives['2'].path, '--name', 'default/lin', '--version', '2', '--json');
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(JSON.parse(seeded.stdout)).toMatchObject({ sha256: archives['2'].sha256, daemon: true, alreadyPresent: false });
    const r = await cli('apply', '-f', writeSpec('v2.yaml', resource(['1', '2'], '2')));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('default/lin configured (generation 2)\n');
    await waitServing('2');
    expect((await inferX(gateway, 'lin', [1, 2])).body).toMatchObject({ model_version: '2', outputs: [{ data: [3, 6] }] });
    // The same file again changes nothing.
    const again = await cli('apply', '-f', writeSpec('v2.yaml', resource(['1', '2'], '2')));
    expect(again.stdout).toBe('default/lin unchanged (generation 2)\n');
  });

  it('rollback serves the previous version until the spec changes', async () => {
    const r = await cli('rollback', 'lin');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/default\/lin: serving 1 instead of the target \(was 2\)/);
    await waitServing('1', '1');
    expect((await inferX(gateway, 'lin', [1, 2])).body).toMatchObject({ model_version: '1', outputs: [{ data: [3, 5] }] });
    const m = (await status()).models[0];
    expect(m).toMatchObject({ targetVersion: '2', servingVersion: '1', heldVersion: '1', reason: 'RolledBack' });
    const ev = await cli('events', 'lin', '--json', '--limit', '100');
    expect(ev.code, ev.stderr).toBe(0);
    expect((JSON.parse(ev.stdout) as { events: Array<{ kind: string; message: string }> }).events).toContainEqual(
      expect.objectContaining({ kind: 'Rollback', message: expect.stringMatching(/^held at version 1@[0-9a-f]{12} \(was serving 2@[0-9a-f]{12}\)/) }),
    );
    // The daemon's log line is about the held version, and says it is held instead of the target.
    const heldLog = daemon!.logs.find((l) => l.reason === 'RolledBack');
    expect(heldLog).toMatchObject({ level: 'info', model: 'default/lin', version: '1' });
    expect(String(heldLog!.msg)).toMatch(/^serving version 1@[0-9a-f]{12}, held by `modeld rollback` instead of the target 2@[0-9a-f]{12}, until the spec changes or `modeld rollback --release default\/lin`$/);
    // The hold is visible, with how to end it; the same file again keeps it and says so.
    const table = await cli('status');
    expect(table.stdout).toContain('default/lin held at version 1 by `modeld rollback` (target 2): `modeld rollback --release default/lin` ends the hold\n');
    const described = await cli('describe', 'lin');
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/Hold: +held at version 1 by/);
    expect(described.stdout).toMatch(new RegExp(`\\n  1 +serving, held +${archives['1'].sha256}\\n  2 +previous +${archives['2'].sha256}\\n`));
    const same = await cli('apply', '-f', writeSpec('v2.yaml', resource(['1', '2'], '2')));
    expect(same.stdout).toBe('default/lin unchanged (generation 2)\n');
    expect(same.stderr).toContain('default/lin: held at version 1 by a rollback; `modeld rollback --release default/lin` serves the target again');

    // --release ends the hold: the target serves again, under the same spec.
    const released = await cli('rollback', '--release', 'lin');
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout).toBe('default/lin: hold at version 1 released; serving the target (2) again\n');
    await waitServing('2');
    expect((await inferX(gateway, 'lin', [1, 2])).body).toMatchObject({ model_version: '2' });
    const notHeld = await cli('rollback', 'lin', '--release');
    expect(notHeld.code).toBe(1);
    expect(notHeld.stderr).toBe('modeld: NotHeld: default/lin is not held by a rollback\n');
    const afterRelease = (await status()).models[0];
    expect(afterRelease.generation).toBe(2);
    expect(afterRelease.heldVersion).toBeUndefined();

    // Held again; now a spec change ends the hold.
    expect((await cli('rollback', 'lin')).code).toBe(0);
    await waitServing('1', '1');

    // Any spec change ends the hold: the target serves again.
    const changed = await cli('apply', '-f', writeSpec('v2b.yaml', resource(['1', '2'])));
    expect(changed.code, changed.stderr).toBe(0);
    await waitServing('2');
    expect((await inferX(gateway, 'lin', [1, 2])).body).toMatchObject({ model_version: '2' });
  }, 240_000);

  it('rollback --to a version that is not installed, and of an unknown model, fail with a reason', async () => {
    const notInstalled = await cli('rollback', 'lin', '--to', '7');
    expect(notInstalled.code).toBe(1);
    expect(notInstalled.stderr).toMatch(/^modeld: NoRollbackVersion: version 7 of default\/lin is not installed/);
    const unknown = await cli('rollback', 'nope');
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toBe('modeld: NotFound: no model default/nope on this node\n');
  });

  it('delete removes the local model; the gateway stops routing it', async () => {
    const r = await cli('delete', 'lin');
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await status()).models.length === 0, 60_000, 'the model to be gone');
    expect((await inferX(gateway, 'lin', [1])).status).toBe(404);
    const again = await cli('delete', 'lin');
    expect(again.code).toBe(4);
  });
});
