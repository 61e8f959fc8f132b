import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { makeTree, packDir } from '../helpers/archives.js';
import { connectCloud, type Cloud } from '../helpers/cloud.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

// Guarantee 2 through the overlapped unpack: the archive is unpacked while it downloads, and the
// download may start over on other bytes (a Range answered 200 because the object changed on the
// server). What is promoted must be exactly the verified archive's content — never the old
// object's prefix with the new one's suffix. The agent as a child process; a server that changes
// the object. (overlap-unpack.test.ts drives the same race deterministically, in-process.)

const NODE = 'edge-1';
let work: string;
let broker: Broker;
let cloud: Cloud;
let agent: AgentProcess | undefined;
let server: Server | undefined;
const sockets = new Set<Socket>();

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'overlap-exact-'));
  broker = await startMosquitto();
  cloud = await connectCloud(broker.url);
});

afterEach(async () => {
  await agent?.end();
  agent = undefined;
  for (const s of sockets) s.destroy();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
  await cloud.close();
  await broker.close();
  rmSync(work, { recursive: true, force: true });
});

/** Many small files (the unpack lags behind the download), every one saying which object it is from. */
async function archive(tag: string): Promise<{ body: Buffer; files: Record<string, Buffer> }> {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < 1500; i++) files[`w/${i % 30}/f${i}.bin`] = Buffer.concat([Buffer.from(`${tag}:${i}:`), randomBytes(1500)]);
  const src = join(work, `src-${tag}`);
  await makeTree(src, files);
  return { body: readFileSync(await packDir(src, join(work, `${tag}.tgz`), { gzip: true })), files };
}

/** First answer: object A, cut at `cutAt` of its bytes. Every later answer: 200 with object B, whatever the Range. */
async function changingServer(a: Buffer, b: Buffer, cutAt: number): Promise<string> {
  let n = 0;
  server = createServer((req, res) => {
    if (n++ === 0) {
      res.writeHead(200, { 'content-length': a.length, etag: '"a"' });
      res.write(a.subarray(0, Math.floor(a.length * cutAt)), () => res.socket?.destroy());
      return;
    }
    res.writeHead(200, { 'content-length': b.length, etag: '"b"' }).end(b);
  });
  server.on('connection', (s) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/m.tgz`;
}

async function startAgent(): Promise<AgentProcess> {
  const hellos = cloud.hellos.length;
  agent = startAgentProcess(
    { node: { name: NODE }, broker: { url: broker.url, reconnectMs: 200, reconnectMaxMs: 1000 }, stateDir: join(work, 'state'), admin: { metricsPort: 0 }, fetch: { backoffBaseMs: 20, backoffMaxMs: 100 }, log: { level: 'debug' } },
    ['--no-serve'],
  );
  await waitFor(() => cloud.hellos.length > hellos || agent!.child.exitCode !== null, 60_000, 'hello');
  expect(agent.child.exitCode).toBeNull();
  return agent;
}

const content = (url: string, body: Buffer): ModelContent => ({
  metadata: { name: 'm', namespace: 'default', uid: 'u-m', generation: 1 },
  spec: { modelName: 'm', deployToLayer: 'edge', manifest: [{ version: '1', downloadURL: url, sha256sum: createHash('sha256').update(body).digest('hex') }], targetVersion: '1' },
});
const settled = (s: StatusContent) => s.name === 'm' && (s.phase === 'Failed' || s.phase === 'Installed');

describe('the overlapped unpack promotes exactly the verified archive', { timeout: 240_000 }, () => {
  for (const cutAt of [0.6]) {
    it(`a download that starts over on another object at ${cutAt * 100}% installs only the new object's files`, async () => {
      const a = await archive('A');
      const b = await archive('B');
      const url = await changingServer(a.body, b.body, cutAt);
      await startAgent();
      await cloud.update(NODE, content(url, b.body));
      const s = await cloud.waitStatus(settled, { timeoutMs: 180_000, what: 'the model settled' });
      expect(s.phase).toBe('Installed');
      const current = join(work, 'state', 'models', 'default', 'm', 'current');
      const wrong = Object.entries(b.files).filter(([rel, data]) => !readFileSync(join(current, rel)).equals(data));
      expect(wrong.map(([rel]) => `${rel}: ${readFileSync(join(current, rel)).subarray(0, 8).toString()}`).slice(0, 5)).toEqual([]);
      expect(readdirSync(join(current, 'w')).length).toBe(30);
    });
  }
});
