import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { ModelContent } from '../../shared/index.js';
import type { AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { E2E_NODE, useE2e } from '../helpers/e2e-agent.js';
import { waitFor } from '../helpers/wait.js';

// The agent as a real child process over a real mosquitto, downloading real archives from real
// HTTP servers: the delivery pipeline end to end, including kill -9 at awkward moments.

const e2e = useE2e({ prefix: 'e2e-delivery-', gateway: false });

const NODE = E2E_NODE;

/** Starts the agent and waits for its hello: it is subscribed and takes specs from then on. */
function agent(extra: Record<string, unknown> = {}): Promise<AgentProcess> {
  const config = e2e.config({
    node: { name: NODE, labels: { zone: 'a' } },
    admin: undefined,
    fetch: { progressIntervalMs: 100, backoffBaseMs: 50, backoffMaxMs: 500, stallTimeoutMs: 60_000 },
    log: { level: 'debug' },
    ...extra,
  });
  return e2e.startAgent(config, ['--no-serve']);
}

/** An archive whose files say which version they are: `version.txt` and `weights/*.bin`. */
async function archive(version: string, opts: { files?: number; fileBytes?: number } = {}) {
  const src = join(e2e.work, `src-${version}`);
  const files: Record<string, string | Buffer> = { 'version.txt': version };
  for (let i = 0; i < (opts.files ?? 2); i++) files[`weights/part-${i}.bin`] = Buffer.concat([Buffer.from(`${version}:`), randomBytes(opts.fileBytes ?? 1024)]);
  await makeTree(src, files);
  const file = await packDir(src, join(e2e.work, `v${version}.tar.gz`), { gzip: true });
  const body = readFileSync(file);
  const server = await e2e.serveBody(body);
  return { version, server, sha256: server.sha256, size: body.length, files };
}

type Archive = Awaited<ReturnType<typeof archive>>;

const content = (generation: number, versions: Archive[], targetVersion: string, name = 'resnet'): ModelContent => ({
  metadata: { name, namespace: 'default', uid: `uid-${name}`, generation },
  spec: {
    modelName: name,
    deployToLayer: 'edge',
    nodeSelector: { zone: 'a' },
    manifest: versions.map((v) => ({ version: v.version, downloadURL: v.server.urlFor(`/${v.version}.tar.gz`), sha256sum: v.sha256 })),
    targetVersion,
  },
});

const modelDir = (name = 'resnet') => join(e2e.stateDir, 'models', 'default', name);
/** The version `current` names (its link is versions/<version>@<sha256>). */
const currentVersion = (name = 'resnet') => (existsSync(join(modelDir(name), 'current')) ? readlinkSync(join(modelDir(name), 'current')).replace(/^versions\//, '').split('@')[0] : undefined);

/** Guarantee 1: `current` is absent or names a complete version whose files are exactly that version's. */
function assertCurrentComplete(all: Archive[]) {
  const v = currentVersion();
  if (v === undefined) return;
  const a = all.find((x) => x.version === v)!;
  expect(readlinkSync(join(modelDir(), 'current'))).toBe(`versions/${v}@${a.sha256}`);
  const dir = join(modelDir(), 'current');
  expect(existsSync(join(dir, '.modeld-complete'))).toBe(true);
  for (const [rel, data] of Object.entries(a.files)) expect(readFileSync(join(dir, rel)).equals(Buffer.from(data))).toBe(true);
}

describe('delivery end to end', { timeout: 240_000 }, () => {
  it('downloads, verifies, installs and switches; then switches, deletes and syncs', async () => {
    const v1 = await archive('1');
    const v2 = await archive('2');
    await agent();
    const id1 = await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed' && s.servingVersion === '1', { what: 'v1 installed' });
    expect(currentVersion()).toBe('1');
    assertCurrentComplete([v1, v2]);
    // It was unpacked while downloading, not after (the fallback logs why it had to).
    expect(e2e.agents[0].logs.filter((l) => String(l.msg).includes('unpacking during the download did not work out'))).toEqual([]);

    // Statuses for generation 1 come in pipeline order and answer the spec message.
    const gen1 = e2e.cloud.statuses.filter((s) => s.observedGeneration === 1 && s.name === 'resnet');
    const phases = gen1.map((s) => s.phase).filter((p, i, all) => p !== all[i - 1]);
    expect(phases).toEqual(['Pending', 'Downloading', 'Verifying', 'Installing', 'Installed']);
    const i = e2e.cloud.statuses.indexOf(gen1[0]);
    expect(e2e.cloud.headers[i].parent_msg_id).toBe(id1);

    const from = e2e.cloud.statuses.length;
    await e2e.cloud.update(NODE, content(2, [v1, v2], '2'));
    const s2 = await e2e.cloud.waitStatus((s) => s.phase === 'Installed' && s.servingVersion === '2', { from, what: 'v2 installed' });
    expect(s2.observedGeneration).toBe(2);
    expect(currentVersion()).toBe('2');
    expect(s2.versions?.find((v) => v.version === '1')?.state).toBe('previous');
    assertCurrentComplete([v1, v2]);

    // A second model, then a sync that no longer lists it: it goes.
    await e2e.cloud.update(NODE, content(1, [v1], '1', 'other'));
    await e2e.cloud.waitStatus((s) => s.name === 'other' && s.phase === 'Installed', { what: 'other installed' });
    await e2e.cloud.sync(NODE, [content(2, [v1, v2], '2')]);
    await e2e.cloud.waitStatus((s) => s.name === 'other' && s.phase === 'Deleted', { what: 'other deleted by sync' });
    expect(existsSync(modelDir('other'))).toBe(false);
    expect(currentVersion()).toBe('2');

    await e2e.cloud.remove(NODE, 'default', 'resnet');
    await e2e.cloud.waitStatus((s) => s.name === 'resnet' && s.phase === 'Deleted', { what: 'resnet deleted' });
    expect(existsSync(modelDir())).toBe(false);
  });

  it('installs correctly when the download starts over under the unpacker (server ignores Range)', async () => {
    const v1 = await archive('1', { files: 4, fileBytes: 512 * 1024 });
    v1.server.script({ kind: 'drop', atByte: Math.floor(v1.size / 2) }, { kind: 'ignoreRange' });
    await agent();
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { what: 'installed' });
    assertCurrentComplete([v1]);
    expect(v1.server.requests.map((r) => r.action)).toEqual(['drop', 'ignoreRange']);
  });

  it('does the work once when the same spec is sent ten times', async () => {
    const v1 = await archive('1');
    await agent();
    for (let i = 0; i < 10; i++) await e2e.cloud.update(NODE, content(1, [v1], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { what: 'installed' });
    // One more copy, answered with the current status: the agent has taken in every copy before it.
    const from = e2e.cloud.statuses.length;
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { from, what: 'the last copy answered' });
    expect(v1.server.requests.length).toBe(1);
    expect(e2e.cloud.statuses.filter((s) => s.phase === 'Installing')).toHaveLength(1);
  });

  it('reports DigestMismatch with both digests for a flipped byte and installs nothing', async () => {
    const v1 = await archive('1');
    v1.server.fallback = { kind: 'flip', atByte: 100 };
    await agent();
    await e2e.cloud.update(NODE, content(1, [v1], '1'));
    const failed = await e2e.cloud.waitStatus((s) => s.phase === 'Failed', { what: 'Failed' });
    expect(failed.reason).toBe('DigestMismatch');
    expect(failed.message).toContain(v1.sha256);
    expect(currentVersion()).toBeUndefined();
    expect(existsSync(join(modelDir(), 'versions')) ? readdirSync(join(modelDir(), 'versions')) : []).toEqual([]);
  });

  it('reports HTTPError for a 404 without retrying, and keeps the old version', async () => {
    const v1 = await archive('1');
    const v2 = await archive('2');
    await agent();
    await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { what: 'v1' });
    v2.server.fallback = { kind: 'status', status: 404 };
    await e2e.cloud.update(NODE, content(2, [v1, v2], '2'));
    const failed = await e2e.cloud.waitStatus((s) => s.phase === 'Failed' && s.observedGeneration === 2, { what: 'Failed' });
    expect(failed.reason).toBe('HTTPError');
    expect(failed.servingVersion).toBe('1');
    expect(v2.server.requests).toHaveLength(1);
    expect(currentVersion()).toBe('1');
  });

  it('on a full disk keeps the old version in place, reports the failure and keeps running', async (ctx) => {
    const unmount = mountTmpfs(e2e.stateDir, '6m');
    if (!unmount) return ctx.skip();
    try {
      const v1 = await archive('1', { files: 2, fileBytes: 256 * 1024 });
      const v2 = await archive('2', { files: 4, fileBytes: 2 * 1024 * 1024 });
      await agent({ fetch: { progressIntervalMs: 100, backoffBaseMs: 50, backoffMaxMs: 500, reserveBytes: 0 } });
      await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
      await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { what: 'v1' });
      await e2e.cloud.update(NODE, content(2, [v1, v2], '2'));
      const failed = await e2e.cloud.waitStatus((s) => s.phase === 'Failed' && s.observedGeneration === 2, { what: 'Failed on a full disk' });
      expect(failed.reason).toBe('NoSpace');
      expect(failed.servingVersion).toBe('1');
      expect(currentVersion()).toBe('1');
      assertCurrentComplete([v1, v2]);
      // Still alive and answering: a spec back to v1 is acknowledged.
      const from = e2e.cloud.statuses.length;
      await e2e.cloud.update(NODE, content(3, [v1, v2], '1'));
      await e2e.cloud.waitStatus((s) => s.observedGeneration === 3 && s.phase === 'Installed', { from, what: 'back on v1' });
      expect(e2e.agents.at(-1)!.child.exitCode).toBeNull();
    } finally {
      for (const a of e2e.agents) await a.end();
      unmount();
    }
  });

  it('resumes a download after kill -9, fetching under 5% of the archive again', async () => {
    const big = await archive('1', { files: 4, fileBytes: 4 * 1024 * 1024 });
    big.server.script({ kind: 'stall', atByte: Math.floor(big.size * 0.6) });
    let a = await agent();
    await e2e.cloud.update(NODE, content(1, [big], '1'));
    // Wait until the agent has durably recorded most of what it received.
    await waitFor(() => downloadedBytes() >= big.size * 0.55, 60_000, 'download checkpoint');
    await a.kill('SIGKILL');
    const sentBefore = big.server.bytesSent();
    a = await agent();
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { what: 'installed after restart', timeoutMs: 90_000 });
    const refetched = big.server.bytesSent() - big.size;
    expect(sentBefore).toBeGreaterThan(big.size * 0.55);
    expect(refetched).toBeLessThan(big.size * 0.05);
    expect(big.server.requests.at(-1)?.range).toMatch(/^bytes=\d+-$/);
    assertCurrentComplete([big]);
  });

  it('keeps current a complete old or new version when killed at any instant of install and switch', async () => {
    const v1 = await archive('1', { files: 40, fileBytes: 256 * 1024 });
    const v2 = await archive('2', { files: 40, fileBytes: 256 * 1024 });
    let a = await agent();
    await e2e.cloud.update(NODE, content(1, [v1, v2], '1'));
    await e2e.cloud.waitStatus((s) => s.phase === 'Installed', { what: 'v1', timeoutMs: 90_000 });
    await a.kill();
    // Kill during unpack (once Installing is reported), then at spread-out instants.
    const delays = ['installing', 0, 150, 300, 600, 900, 1300];
    let generation = 1;
    for (const delay of delays) {
      const from = e2e.cloud.statuses.length;
      a = await agent();
      generation++;
      await e2e.cloud.update(NODE, content(generation, [v1, v2], generation % 2 === 0 ? '2' : '1'));
      if (delay === 'installing') await e2e.cloud.waitStatus((s) => s.phase === 'Installing', { from, what: 'Installing' });
      else await new Promise((r) => setTimeout(r, delay as number));
      await a.kill('SIGKILL');
      assertCurrentComplete([v1, v2]);
    }
    // Then it converges to the last target (it may have got there before the last kill).
    a = await agent();
    const want = generation % 2 === 0 ? '2' : '1';
    await e2e.cloud.waitStatus((s) => s.observedGeneration === generation && s.phase === 'Installed' && s.servingVersion === want, { what: `converged on ${want}`, timeoutMs: 90_000 });
    expect(currentVersion()).toBe(want);
    assertCurrentComplete([v1, v2]);
    expect(existsSync(join(e2e.stateDir, 'staging')) ? readdirSync(join(e2e.stateDir, 'staging')).length : 0).toBe(0);
  });
});

/** A small tmpfs at `dir` (root only); undefined, with the reason printed, where mounting is not allowed. */
function mountTmpfs(dir: string, size: string): (() => void) | undefined {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.warn(`full-disk test skipped: cannot mount a tmpfs here (${(r.stderr || r.error?.message || '').trim()})`);
    return undefined;
  }
  return () => void spawnSync('umount', ['-l', dir]);
}

function downloadedBytes(): number {
  const path = join(e2e.stateDir, 'state.db');
  if (!existsSync(path)) return 0;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT MAX(bytes_done) AS n FROM downloads').get() as { n: number | null }).n ?? 0;
  } finally {
    db.close();
  }
}
