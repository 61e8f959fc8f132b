import { connect, type Socket } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { makeTempRoot, openAgent, rejection, testPolicy } from './fetch-fixture.js';

// A server whose accept queue is full: a real process listens with backlog 1 and then blocks
// its event loop, so the kernel drops further SYNs and a connect() hangs, as on a dead route.

const LISTENER = `
const s = require('net').createServer();
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  console.log(s.address().port);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
});`;

let listener: ProcessTree | undefined;
const fillers: Socket[] = [];
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const s of fillers.splice(0)) s.destroy();
  await listener?.end();
  listener = undefined;
  for (const c of cleanups.splice(0)) await c();
});

/** A URL on a loopback port where connect() hangs. */
async function blackholeUrl(): Promise<string> {
  listener = spawnTree(process.execPath, ['-e', LISTENER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const out = listener.child.stdout!;
  const port = Number(await new Promise<string>((r) => out.once('data', (d) => r(String(d).trim()))));
  // Fill the accept queue (backlog 1 holds two connections).
  for (let i = 0; i < 2; i++) {
    const s = connect(port, '127.0.0.1');
    fillers.push(s);
    await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  }
  return `http://127.0.0.1:${port}/model.tar.gz`;
}

async function tempAgent(policy: Parameters<typeof testPolicy>[0]) {
  const t = await makeTempRoot();
  cleanups.push(t.cleanup);
  const agent = openAgent(t.root, testPolicy(policy));
  cleanups.unshift(async () => agent.close());
  return agent;
}

it('a connect that never completes is retried, then reported as ConnectTimeout', async () => {
  const url = await blackholeUrl();
  const agent = await tempAgent({ connectTimeoutMs: 300, attempts: 2 });
  const err = await rejection(agent.fetch({ url, sha256: 'ab'.repeat(32) }));
  expect(err).toMatchObject({ code: 'ConnectTimeout', retryable: true, details: { url, attempts: 2 } });
  expect(agent.waits).toHaveLength(1);
});

it('an abort while still connecting ends the call at once (undici alone would wait for the connect)', async () => {
  const url = await blackholeUrl();
  const agent = await tempAgent({ connectTimeoutMs: 600_000, stallTimeoutMs: 600_000 });
  const ctl = new AbortController();
  const p = agent.fetch({ url, sha256: 'ab'.repeat(32) }, { signal: ctl.signal });
  setTimeout(() => ctl.abort(), 200);
  expect((await rejection(p)).code).toBe('Cancelled');
});
