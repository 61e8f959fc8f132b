import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StatusContent } from '../../shared/index.js';
import type { StatusReport } from '../../agent/admin/status-view.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { E2E_NODE, linearContent as content, useE2e } from '../helpers/e2e-agent.js';
import { writeLegacyState } from '../helpers/legacy-state.js';
import { inferenceModel, runCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { makeModelArchive, makeModelDir } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

// Guarantee 2, second half: what a node serves is exactly the bytes whose digest its current
// spec names. A version republished under the same name with other bytes (a retrained model)
// is fetched, installed beside the serving tree, switched to without dropping a request, and
// the old tree stays the rollback. The agent is a real child process on a real mosquitto,
// downloading from real HTTP servers and serving through real onnxruntime.

const e2e = useE2e({ prefix: 'e2e-republish-' });
let configFile: string;

const NODE = E2E_NODE;
const modelDir = () => join(e2e.stateDir, 'models', 'default', 'linear');

function agent(): Promise<AgentProcess> {
  const config = e2e.config({ serving: { startTimeoutMs: 30_000, drainTimeoutMs: 2000, stopGraceMs: 2000 } });
  configFile = writeConfig(config, join(e2e.work, 'config.yaml'));
  return e2e.startAgent(config);
}

/** One published build of a version: y = x * w + b, served from its own HTTP server. */
async function build(version: string, w: number, b: number) {
  const file = join(e2e.work, `v${version}-w${w}.tar.gz`);
  const a = await makeModelArchive(file, { w, b });
  const server = await e2e.serveBody(readFileSync(a.path));
  // The bytes the installed tree must hold: model.onnx exactly as this build wrote it.
  const model = readFileSync(join(makeModelDir(join(e2e.work, `expect-${version}-w${w}`), { w, b }), 'model.onnx'));
  return { version, w, b, url: server.urlFor(`/linear-${version}.tar.gz`), sha256: a.sha256, server, model, y: (x: number) => x * w + b };
}
type Build = Awaited<ReturnType<typeof build>>;

const infer = (x: number) => e2e.infer('linear', x);

/** Requests sent back to back until stopped: every answer must be a 200 from one of the builds. */
function steadyTraffic(expected: Build[]) {
  let stop = false;
  const bad: Array<{ status: number; y?: number }> = [];
  let sent = 0;
  const done = (async () => {
    while (!stop) {
      const r = await infer(10);
      sent++;
      if (r.status !== 200 || !expected.some((b) => b.y(10) === r.y)) bad.push(r);
    }
  })();
  return {
    async end() {
      stop = true;
      await done;
      return { sent, bad };
    },
  };
}

/** What `current` resolves to holds exactly this build's bytes, and is complete. */
function expectCurrentHolds(b: Build) {
  expect(existsSync(join(modelDir(), 'current', '.modeld-complete'))).toBe(true);
  expect(readFileSync(join(modelDir(), 'current', 'model.onnx')).equals(b.model)).toBe(true);
  const marker = JSON.parse(readFileSync(join(modelDir(), 'current', '.modeld-complete'), 'utf8')) as { sha256?: string };
  expect(marker.sha256).toBe(b.sha256);
}

const entry = (s: StatusContent, sha256: string) => s.versions?.find((v) => v.sha256sum === sha256);
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('a version republished with other bytes', { timeout: 240_000 }, () => {
  it('is downloaded, installed beside the serving tree, switched to without a failed request, reported, and can be rolled back', async () => {
    const first = await build('1', 2, 1);
    const retrained = await build('1', 3, -1);
    expect(retrained.sha256).not.toBe(first.sha256);
    await agent();

    await e2e.cloud.update(NODE, content(1, [first], '1'));
    await e2e.cloud.waitStatus((s) => s.observedGeneration === 1 && s.phase === 'Serving' && s.readyReplicas === 1, { timeoutMs: 60_000, what: 'build 1 serving' });
    expect(await infer(10)).toMatchObject({ status: 200, y: first.y(10) });
    expectCurrentHolds(first);

    // Same version name, new downloadURL and sha256sum.
    const traffic = steadyTraffic([first, retrained]);
    const from = e2e.cloud.statuses.length;
    await e2e.cloud.update(NODE, content(2, [retrained], '1'));
    const served = await e2e.cloud.waitStatus((s) => s.observedGeneration === 2 && s.phase === 'Serving' && s.readyReplicas === 1 && entry(s, retrained.sha256)?.state === 'serving', { from, timeoutMs: 60_000, what: 'the republished build serving' });
    const { sent, bad } = await traffic.end();

    expect(retrained.server.requests.length, 'the republished archive was downloaded').toBeGreaterThan(0);
    expect(await infer(10)).toMatchObject({ status: 200, y: retrained.y(10) });
    expectCurrentHolds(retrained);
    expect(sent).toBeGreaterThan(0);
    expect(bad).toEqual([]);
    // The report names the digest it serves, and keeps the old build as the rollback.
    expect(served.servingVersion).toBe('1');
    expect(entry(served, retrained.sha256)?.state).toBe('serving');
    expect(entry(served, first.sha256)?.state).toBe('previous');
    // Both trees are on disk side by side, each named by version and digest.
    expect(readdirSync(join(modelDir(), 'versions')).sort()).toEqual([`1@${first.sha256}`, `1@${retrained.sha256}`].sort());
    expect(readlinkSync(join(modelDir(), 'current'))).toBe(`versions/1@${retrained.sha256}`);

    // `modeld rollback` goes back to the first build's bytes under the same version name.
    const rolledFrom = e2e.cloud.statuses.length;
    const r = await runCli(configFile, ['rollback', 'linear']);
    expect(r.code, r.stderr).toBe(0);
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.reason === 'RolledBack' && entry(s, first.sha256)?.state === 'serving', { from: rolledFrom, timeoutMs: 60_000, what: 'rolled back to the first build' });
    expect(await infer(10)).toMatchObject({ status: 200, y: first.y(10) });
    expectCurrentHolds(first);
  });

  it('replaces a local spec of the same version name when the cloud names other bytes', async () => {
    const local = await build('1', 2, 1);
    const cloudBuild = await build('1', 5, 0);
    await agent();

    const file = writeYaml(join(e2e.work, 'local.yaml'), inferenceModel('linear', [{ version: '1', sha256: local.sha256, url: local.url }]));
    const applied = await runCli(configFile, ['apply', '-f', file]);
    expect(applied.code, applied.stderr).toBe(0);
    await e2e.cloud.waitStatus((s) => s.name === 'linear' && s.phase === 'Serving' && s.readyReplicas === 1, { timeoutMs: 60_000, what: 'the local spec serving' });
    expectCurrentHolds(local);

    const from = e2e.cloud.statuses.length;
    await e2e.cloud.update(NODE, content(1, [cloudBuild], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Serving' && s.readyReplicas === 1 && entry(s, cloudBuild.sha256)?.state === 'serving', { from, timeoutMs: 60_000, what: "the cloud's build serving" });
    expect(cloudBuild.server.requests.length).toBeGreaterThan(0);
    expect(await infer(10)).toMatchObject({ status: 200, y: cloudBuild.y(10) });
    expectCurrentHolds(cloudBuild);
    expect(sha(readFileSync(join(modelDir(), 'current', 'model.onnx')))).toBe(sha(cloudBuild.model));
  });
});

describe('a state directory of the old versions/<v> layout', { timeout: 240_000 }, () => {
  it('is migrated at start and keeps serving, with no download, its rollback tree intact', async () => {
    const v1 = await build('1', 2, 1);
    const v2 = await build('2', 3, -1);
    const { spec } = content(1, [v1, v2], '2');
    await writeLegacyState(e2e.stateDir, [
      {
        namespace: 'default',
        name: 'linear',
        spec,
        versions: [v1, v2].map((b) => ({ version: b.version, sha256: b.sha256, files: { 'model.onnx': b.model } })),
        current: '2',
        previous: '1',
      },
    ]);
    await agent();
    await waitFor(async () => (await infer(10)).y === v2.y(10), 60_000, 'the migrated tree serving');
    expect(readlinkSync(join(modelDir(), 'current'))).toBe(`versions/2@${v2.sha256}`);
    expect(readdirSync(join(modelDir(), 'versions')).sort()).toEqual([`1@${v1.sha256}`, `2@${v2.sha256}`]);
    expectCurrentHolds(v2);
    expect(v1.server.requests.length + v2.server.requests.length).toBe(0);

    const status = async () => {
      const r = await runCli(configFile, ['status', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as StatusReport).models.find((m) => m.name === 'linear')!;
    };
    const m = await status();
    expect(m.versions).toEqual(
      expect.arrayContaining([
        { version: '2', sha256sum: v2.sha256, state: 'serving' },
        { version: '1', sha256sum: v1.sha256, state: 'previous' },
      ]),
    );
    // The migrated rollback tree is still the rollback.
    const r = await runCli(configFile, ['rollback', 'linear']);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await infer(10)).y === v1.y(10), 60_000, 'rolled back to the migrated previous tree');
    // Traffic moves first, then `current` follows.
    await waitFor(() => readlinkSync(join(modelDir(), 'current')) === `versions/1@${v1.sha256}`, 30_000, 'current to point at the previous tree');
    expectCurrentHolds(v1);
    expect(v1.server.requests.length).toBe(0);
  });
});
