import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { rawTar, writeGzipBomb } from '../helpers/archives.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

// An archive whose digest is right can still be hostile: a gzip bomb fills an SD card. The agent
// refuses, by default, archives that inflate far more than model weights do, and any archive whose
// content would not fit the disk with the reserve kept free. The agent as a child process.

const NODE = 'edge-1';
let work: string;
let broker: Broker;
let cloud: Cloud;
let agent: AgentProcess | undefined;
let server: ChaosServer | undefined;
let unmount: (() => void) | undefined;

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'unpack-limits-'));
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
});

afterEach(async () => {
  await agent?.end();
  agent = undefined;
  await server?.stop();
  server = undefined;
  await cloud.close();
  await broker.close();
  unmount?.();
  unmount = undefined;
  rmSync(work, { recursive: true, force: true });
});

async function startAgent(stateDir: string, extra: Record<string, unknown> = {}) {
  const hellos = cloud.hellos.length;
  agent = startAgentProcess({ node: { name: NODE }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir, admin: { metricsPort: 0 }, log: { level: 'debug' }, ...extra }, ['--no-serve']);
  await waitFor(() => cloud.hellos.length > hellos || agent!.child.exitCode !== null, 60_000, 'hello');
  expect(agent.child.exitCode).toBeNull();
}

const spec = (body: Buffer): ModelContent => ({
  metadata: { name: 'm', namespace: 'default', uid: 'u-m', generation: 1 },
  spec: { modelName: 'm', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: server!.urlFor('/m.tgz'), sha256sum: createHash('sha256').update(body).digest('hex') }], targetVersion: '1' },
});

const settled = (s: StatusContent) => s.name === 'm' && (s.phase === 'Failed' || s.phase === 'Installed');

describe('unpack limits that fit an edge board', { timeout: 180_000 }, () => {
  it('a 1 GiB gzip bomb with a correct digest is refused by the compression-ratio limit, early, and nothing is installed', async () => {
    const body = readFileSync(await writeGzipBomb(join(work, 'bomb.tgz'), { declaredBytes: 1024 ** 3 }));
    server = await startChaosServer({ body });
    await startAgent(join(work, 'state'));
    await cloud.update(NODE, spec(body));
    const s = await cloud.waitStatus(settled, { timeoutMs: 120_000, what: 'the bomb settled' });
    expect(s).toMatchObject({ phase: 'Failed', reason: 'ArchiveTooLarge' });
    expect(s.message).toMatch(/compression ratio/);
    expect(existsSync(join(work, 'state', 'models', 'default', 'm', 'current'))).toBe(false);
    expect(readdirSync(join(work, 'state', 'staging'))).toEqual([]);
  });

  it('an archive whose content would eat into the free-space reserve is refused before it is unpacked', async (ctx) => {
    const disk = join(work, 'disk');
    mkdirSync(disk);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', disk], { encoding: 'utf8' });
    if (mounted.status !== 0) {
      console.warn(`skipped: cannot mount a tmpfs here (${(mounted.stderr || mounted.error?.message || '').trim()})`);
      return ctx.skip();
    }
    unmount = () => void spawnSync('umount', ['-l', disk]);
    // 8 MiB on the wire, 40 MiB of content (half random, half zeros: ratio ~5, like real weights or a little more).
    const files = Array.from({ length: 10 }, (_, i) => ({ path: `w/${i}.bin`, body: Buffer.concat([randomBytes(2 * 1024 * 1024) /* incompressible */, Buffer.alloc(2 * 1024 * 1024)]) }));
    const body = gzipSync(rawTar(files));
    server = await startChaosServer({ body });
    // 64 MiB disk: the blob leaves ~56 MiB; 40 MiB would fit, but not with 24 MiB kept free.
    await startAgent(join(disk, 'state'), { fetch: { reserveBytes: '24MiB' } });
    await cloud.update(NODE, spec(body));
    const s = await cloud.waitStatus(settled, { timeoutMs: 120_000, what: 'the archive settled' });
    expect(s).toMatchObject({ phase: 'Failed', reason: 'NoSpace' });
    expect(s.message).toMatch(/reserve/);
    expect(existsSync(join(disk, 'state', 'models', 'default', 'm', 'current'))).toBe(false);
  });
});
