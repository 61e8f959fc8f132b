import { connect } from 'node:net';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { detectAddress } from '../../agent/runtime/gateway.js';
import { serverMetadata } from '../../agent/runtime/oip-model.js';
import { isRunning } from '../../agent/runtime/pidfiles.js';
import { Serving } from '../../agent/runtime/serving.js';
import { inferX, makeModelDir, servingEnv } from '../helpers/models.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

// Hostile and malformed requests through the node endpoint (the runtime host) to a real onnx
// session in it: each gets a clear 4xx, and the host does not stop answering.

const LIMIT = 64 * 1024;
let env: ReturnType<typeof servingEnv>;
let serving: Serving;
let url: string;
let hostPid: number;

beforeAll(async () => {
  // default/iso: an `isolation: process` instance, proxied by the host (the other body path).
  env = servingEnv({ gateway: { maxBodyBytes: LIMIT }, serving: { isolateModels: ['default/iso'] } });
  serving = new Serving({ config: env.config, paths: env.paths, log: silentLogger() });
  await serving.start();
  const dir = makeModelDir(env.paths.treeDir('default', 'lin', { version: '1' }), { w: 2, b: 1 });
  await serving.activate({ namespace: 'default', name: 'lin', modelName: 'lin', version: '1', versionDir: dir, replicas: 1 });
  const iso = makeModelDir(env.paths.treeDir('default', 'iso', { version: '1' }), { w: 2, b: 1 });
  await serving.activate({ namespace: 'default', name: 'iso', modelName: 'iso', version: '1', versionDir: iso, replicas: 1 });
  url = serving.gatewayUrl();
  hostPid = (await serving.host.state()).pid;
});
afterAll(async () => {
  await serving?.close();
  await serving?.stopHost();
  env?.cleanup();
});

async function post(path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.text();
  return { status: res.status, text, json: (() => { try { return JSON.parse(text); } catch { return undefined; } })() };
}

/**
 * Sends a body of `total` bytes with node:http, chunked (no content-length) unless `declare` is
 * set, and reads the answer. A write failing (EPIPE, ECONNRESET: the server closed while we were
 * still sending) rejects.
 */
function postStreaming(path: string, total: number, declare = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, url);
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(declare ? { 'content-length': String(total) } : {}) };
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', reject);
    });
    req.on('error', (err) => reject(err));
    const chunk = Buffer.alloc(8192, 0x20);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

async function stillAnswers() {
  const r = await inferX(url, 'lin', [1, 2]);
  expect(r.status).toBe(200);
  expect(r.body.outputs[0].data).toEqual([3, 5]);
  expect(isRunning(hostPid)).toBe(true);
}

describe('gateway with bad requests', () => {
  it.each([
    ['malformed JSON', '{"inputs": [{"name": "x"', 400, /not valid JSON/],
    ['a JSON array', '[1,2,3]', 400, /must be a JSON object/],
    ['a wrong shape', JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }), 400, /does not match the model's \[-1, 1\]/],
    ['a wrong datatype', JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'INT64', data: [1] }] }), 400, /datatype INT64 does not match the model's FP32/],
    ['data not matching the shape', JSON.stringify({ inputs: [{ name: 'x', shape: [3, 1], datatype: 'FP32', data: [1] }] }), 400, /needs 3 values/],
    ['binary garbage', Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80]), 400, /not valid JSON/],
  ])('%s: %i with an OIP error, and keeps answering', async (_what, body, status, msg) => {
    const r = await post('/v2/models/lin/infer', body);
    expect(r.status).toBe(status);
    expect(r.json.error).toMatch(msg);
    await stillAnswers();
  });

  it('a body past gateway.maxBodyBytes with content-length: 413 before it reaches the instance', async () => {
    const r = await post('/v2/models/lin/infer', Buffer.alloc(LIMIT + 1, 0x20));
    expect(r.status).toBe(413);
    expect(r.json.error).toMatch(new RegExp(`over the limit of ${LIMIT}`));
    await stillAnswers();
  });

  it('a chunked body growing past the limit: 413', async () => {
    const r = await postStreaming('/v2/models/lin/infer', LIMIT * 4);
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body).error).toMatch(/over the limit/);
    await stillAnswers();
  });

  it('a body refused while the client still sends it: the client always reads the 413, never a reset', async () => {
    // The answer comes before the body is in; a server that then closes with unread bytes resets
    // the connection, and the client sees EPIPE/ECONNRESET instead of the 413. Many rounds, both
    // ways of sending, so a race shows.
    for (const model of ['lin', 'iso']) {
      for (let round = 0; round < 20; round++) {
        for (const declare of [false, true]) {
          const r = await postStreaming(`/v2/models/${model}/infer`, LIMIT * (4 + (round % 4)), declare);
          expect([model, round, declare, r.status]).toEqual([model, round, declare, 413]);
          expect(JSON.parse(r.body).error).toMatch(/over the limit/);
        }
      }
    }
    await stillAnswers();
  });

  it('an unknown model: 404 with an OIP error; unknown paths: 404', async () => {
    const r = await post('/v2/models/nope/infer', '{}');
    expect(r.status).toBe(404);
    expect(r.json).toEqual({ error: 'unknown model "nope"' });
    expect((await fetch(`${url}/v2/models/%E0%A4%A/infer`, { method: 'POST', body: '{}' })).status).toBe(400);
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
    const tf = await post('/v1/models/nope:predict', '{}');
    expect([tf.status, tf.json]).toEqual([404, { error: 'unknown model "nope"' }]);
    await stillAnswers();
  });

  it('a request that is not HTTP: 400 and the connection closed', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(new URL(url).port), '127.0.0.1', () => s.write('\x16\x03\x01 not http at all\r\n\r\n'));
      let data = '';
      s.on('data', (c) => (data += c));
      s.on('close', () => resolve(data));
      s.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    await stillAnswers();
  });

  it('a client that disconnects mid-request does not leak in-flight counts', async () => {
    const inFlight = async () => (await serving.host.state()).routes.find((r) => r.name === 'lin')!.inFlight;
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path: '/v2/models/lin/infer', method: 'POST', headers: { 'content-length': '1000' } });
    req.on('error', () => {});
    req.write('{"inputs":');
    // Hang up once the gateway counts the request in flight, with its body still incomplete.
    await waitFor(async () => (await inFlight()) > 0, WAIT_MS, 'the request to be in flight');
    req.destroy();
    await waitFor(async () => (await inFlight()) === 0, WAIT_MS, 'no request in flight');
    await stillAnswers();
  });
});

describe('gateway endpoints', () => {
  it('serves node health and the list of served models', async () => {
    expect(await (await fetch(`${url}/v2/health/live`)).json()).toEqual({ live: true });
    expect(await (await fetch(`${url}/v2/health/ready`)).json()).toEqual({ ready: true });
    expect(await (await fetch(`${url}/v2/models`)).json()).toEqual({
      models: [
        { name: 'lin', version: '1', namespace: 'default', resource: 'lin', state: 'READY' },
        { name: 'iso', version: '1', namespace: 'default', resource: 'iso', state: 'READY' },
      ],
    });
  });

  it('GET /v2 and GET /v2/ answer the server metadata with the extensions this runtime implements', async () => {
    for (const path of ['/v2', '/v2/']) {
      const res = await fetch(`${url}${path}`);
      expect([path, res.status]).toEqual([path, 200]);
      expect(await res.json()).toEqual(serverMetadata());
    }
    expect(serverMetadata().extensions).toContain('binary_tensor_data');
  });

  it('status.url uses node.address, else the bind address, else a detected address', () => {
    const port = serving.endpointPort;
    expect(serving.state('default', 'lin')?.url).toBe(`http://127.0.0.1:${port}/v2/models/lin`);
    const saved = { ...env.config.node };
    const savedGw = { ...env.config.gateway };
    try {
      env.config.node.address = '';
      expect(serving.urlFor('lin')).toBe(`http://127.0.0.1:${port}/v2/models/lin`);
      env.config.gateway.bind = '0.0.0.0';
      expect(serving.urlFor('lin')).toBe(`http://${detectAddress()}:${port}/v2/models/lin`);
      expect(detectAddress()).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    } finally {
      Object.assign(env.config.node, saved);
      Object.assign(env.config.gateway, savedGw);
    }
  });
});
