import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminServer } from '../../agent/admin/server.js';
import { openDirect, type Direct } from '../../agent/cli/direct.js';
import { ConfigSchema } from '../../agent/config/schema.js';
import { inferenceModel } from '../helpers/modeld-cli.js';
import { spawnTree } from '../helpers/process-tree.js';

// The admin API on its unix socket, in process over a real store: owner-only socket, stale
// socket handling, and a 4xx {error, reason} for every malformed request, with no state change.

let work: string;
let socketPath: string;
let direct: Direct;
let server: AdminServer | undefined;
const others: Server[] = [];

function call(method: string, path: string, body?: string | Buffer, contentType = 'application/json'): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: body ? { 'content-type': contentType } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => {}); // an oversized body: the server answers and closes before reading it all
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
    req.end(body);
  });
}

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-admin-'));
  socketPath = join(work, 'run', 'sub', 'admin.sock');
  const config = ConfigSchema.parse({ stateDir: join(work, 'state'), node: { name: 'edge-1' }, admin: { socket: socketPath } });
  direct = openDirect(config, 'test');
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const s of others.splice(0)) await new Promise((r) => s.close(r));
  direct.close();
  rmSync(work, { recursive: true, force: true });
});

async function listen(): Promise<AdminServer> {
  server = new AdminServer(direct.deps, { socketPath, maxBodyBytes: 64 * 1024 });
  await server.listen();
  return server;
}

describe('admin API socket', () => {
  it('is owner-only: socket 0600 in a directory created 0700', async () => {
    await listen();
    expect(lstatSync(socketPath).isSocket()).toBe(true);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(work, 'run', 'sub')).mode & 0o777).toBe(0o700);
    expect((await call('GET', '/v1/health')).json).toMatchObject({ ok: true, pid: process.pid, stateDir: join(work, 'state') });
    await server!.close();
    expect(existsSync(socketPath)).toBe(false);
  });

  it('removes a stale socket left by a killed process', async () => {
    await listen();
    await server!.close();
    server = undefined;
    // A process that listens on the path and is killed leaves the socket file behind.
    const squatter = spawnTree(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => squatter.child.stdout!.once('data', r));
    await squatter.end(); // SIGKILL: no chance to remove its socket
    expect(lstatSync(socketPath).isSocket()).toBe(true);
    await listen();
    expect((await call('GET', '/v1/health')).status).toBe(200);
  });

  it('leaves alone a socket another process answers on, and a path that is not a socket', async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(work, 'run', 'sub'), { recursive: true });
    const other = createServer((c) => {
      c.on('error', () => {}); // the probe hangs up at once
      c.end('other');
    });
    others.push(other);
    await new Promise<void>((r) => other.listen(socketPath, r));
    await expect(new AdminServer(direct.deps, { socketPath }).listen()).rejects.toMatchObject({ code: 'AdminSocketInUse' });
    expect(lstatSync(socketPath).isSocket()).toBe(true);
    await new Promise((r) => other.close(r));
    others.length = 0;

    writeFileSync(socketPath, 'precious');
    await expect(new AdminServer(direct.deps, { socketPath }).listen()).rejects.toMatchObject({ code: 'AdminSocketInUse', message: expect.stringMatching(/not a socket/) });
    expect(readFileSync(socketPath, 'utf8')).toBe('precious');
  });
});

describe('admin API requests', () => {
  const rowsOf = () => ({
    specs: direct.deps.store.specs.list(),
    models: direct.deps.store.models.list(),
    blobs: direct.deps.store.blobs.list(),
  });

  it('answers every malformed request with 4xx {error, reason} and changes nothing', async () => {
    await listen();
    const before = rowsOf();
    const cases: Array<[string, string, string | Buffer | undefined, number, string]> = [
      ['POST', '/v1/apply', 'not json', 400, 'BadRequest'],
      ['POST', '/v1/apply', '[1,2]', 400, 'BadRequest'],
      ['POST', '/v1/apply', JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }), 400, 'BadRequest'],
      ['POST', '/v1/apply', JSON.stringify({ ...inferenceModel('lin', [{ version: '1' }]), spec: { modelName: 'lin' } }), 400, 'BadRequest'],
      ['POST', '/v1/apply', JSON.stringify(inferenceModel('lin', [{ version: '1', sha256: 'a'.repeat(64) }], { targetVersion: '9' })), 400, 'BadRequest'],
      ['POST', '/v1/apply', Buffer.alloc(100 * 1024, 0x20), 400, 'BadRequest'],
      ['POST', '/v1/rollback', '{}', 400, 'BadRequest'],
      ['POST', '/v1/rollback', JSON.stringify({ name: 'lin' }), 404, 'NotFound'],
      ['POST', '/v1/gc', JSON.stringify({ dryRun: 'yes' }), 400, 'BadRequest'],
      ['POST', '/v1/seed', JSON.stringify({ path: 'relative.tar.gz' }), 400, 'BadRequest'],
      ['POST', '/v1/seed', JSON.stringify({ path: '/nonexistent/x.tar.gz' }), 400, 'BadRequest'],
      ['POST', '/v1/seed', JSON.stringify({ path: '/etc/hostname' }), 400, 'BadRequest'],
      ['POST', '/v1/seed', JSON.stringify({ path: 42 }), 400, 'BadRequest'],
      ['POST', '/v1/verify', JSON.stringify({ repair: 1 }), 400, 'BadRequest'],
      ['GET', '/v1/status?model=Not_A_Name', undefined, 400, 'BadRequest'],
      ['GET', '/v1/status?model=default/absent', undefined, 404, 'NotFound'],
      ['GET', '/v1/events?limit=0', undefined, 400, 'BadRequest'],
      ['DELETE', '/v1/models/default/absent', undefined, 404, 'NotFound'],
      ['DELETE', '/v1/models/default/Bad%20Name', undefined, 400, 'BadRequest'],
      ['GET', '/v1/nope', undefined, 404, 'NotFound'],
      ['PUT', '/v1/status', '{}', 405, 'BadRequest'],
    ];
    for (const [method, path, body, status, reason] of cases) {
      const r = await call(method, path, body);
      expect({ method, path, status: r.status, reason: r.json.reason }).toEqual({ method, path, status, reason });
      expect(typeof r.json.error).toBe('string');
    }
    expect(rowsOf()).toEqual(before);
    expect((await call('GET', '/v1/health')).status).toBe(200);
  });

  it('applies a local spec, and refuses one over a cloud-managed model (409 ManagedByCloud)', async () => {
    await listen();
    const ok = await call('POST', '/v1/apply', JSON.stringify(inferenceModel('lin', [{ version: '1', sha256: 'a'.repeat(64) }])));
    expect(ok).toMatchObject({ status: 200, json: { model: 'default/lin', changed: true, generation: 1 } });
    expect(direct.deps.store.specs.get('default', 'lin')).toMatchObject({ source: 'local', generation: 1 });

    const yaml = stringify(inferenceModel('lin', [{ version: '2', sha256: 'd'.repeat(64) }]));
    expect(await call('POST', '/v1/apply', yaml, 'application/yaml')).toMatchObject({ status: 200, json: { changed: true, generation: 2 } });
    expect(await call('POST', '/v1/apply', `${yaml}---\n${yaml}`, 'application/yaml')).toMatchObject({ status: 400, json: { reason: 'BadRequest' } });
    expect(await call('POST', '/v1/apply', 'kind: [', 'application/yaml')).toMatchObject({ status: 400, json: { reason: 'BadRequest' } });

    const cloudSpec = inferenceModel('res', [{ version: '1', sha256: 'b'.repeat(64) }]).spec;
    direct.deps.store.specs.put({ namespace: 'default', name: 'res', generation: 3, spec: cloudSpec, msgId: 'm', source: 'cloud', updatedAt: Date.now() });
    const refused = await call('POST', '/v1/apply', JSON.stringify(inferenceModel('res', [{ version: '2', sha256: 'c'.repeat(64) }])));
    expect(refused).toMatchObject({ status: 409, json: { reason: 'ManagedByCloud' } });
    expect(direct.deps.store.specs.get('default', 'res')).toMatchObject({ source: 'cloud', generation: 3 });
    const del = await call('DELETE', '/v1/models/default/res');
    expect(del).toMatchObject({ status: 409, json: { reason: 'ManagedByCloud' } });

    const status = await call('GET', '/v1/status');
    expect(status.json.models.map((m: { name: string; source: string }) => [m.name, m.source])).toEqual([
      ['lin', 'local'],
      ['res', 'cloud'],
    ]);
  });
});
