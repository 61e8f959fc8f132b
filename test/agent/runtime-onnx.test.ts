import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_UNSERVABLE } from '../../agent/runtime/exit-codes.js';
import { builtinServerCommand } from '../../agent/runtime/runtime-plan.js';
import { freePort } from '../helpers/ports.js';
import { writeBrokenModel, writeIdentityModel, writeLinearModel } from '../helpers/models.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { waitFor } from '../helpers/wait.js';

// The built-in onnx runtime as a real process on real onnxruntime, spoken to over HTTP.

interface Running {
  child: ChildProcess;
  url: string;
  output: () => string;
}

const children: ProcessTree[] = [];
let root: string;

async function startServer(dir: string, name: string, version: string, extra: string[] = []): Promise<Running> {
  const port = await freePort();
  const [cmd, ...pre] = builtinServerCommand();
  const tree = spawnTree(cmd, [...pre, '--port', String(port), '--model-dir', dir, '--model-name', name, '--version', version, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(tree);
  const child = tree.child;
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const url = `http://127.0.0.1:${port}`;
  const ready = () => fetch(`${url}/v2/health/ready`).then((r) => r.status === 200, () => false);
  await waitFor(async () => child.exitCode !== null || (await ready()), undefined, `${name} to be ready`).catch((err: Error) => {
    throw new Error(`${err.message}: ${out}`);
  });
  if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before it was ready: ${out}`);
  return { child, url, output: () => out };
}

const post = async (url: string, body: unknown) => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as any };
};

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'modeld-onnx-'));
});
afterAll(async () => {
  for (const c of children.splice(0)) await c.end();
  rmSync(root, { recursive: true, force: true });
});

describe('built-in onnx runtime', () => {
  let lin: Running;
  beforeAll(async () => {
    writeLinearModel(join(root, 'lin', 'model.onnx'), { w: 2.5, b: -1, dims: 2 });
    lin = await startServer(join(root, 'lin'), 'lin', '7');
  });

  it('answers y = x * w + b from the real model, naming its version', async () => {
    const r = await post(`${lin.url}/v2/models/lin/infer`, { id: 'r1', inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [[1, 2], [3, 4]] }] });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ model_name: 'lin', model_version: '7', id: 'r1', outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 2], data: [1.5, 4, 6.5, 9] }] });
  });

  it('serves health, metadata with -1 for the symbolic batch dimension, and model readiness', async () => {
    expect((await fetch(`${lin.url}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${lin.url}/v2/models/lin/ready`)).status).toBe(200);
    const meta = await (await fetch(`${lin.url}/v2/models/lin`)).json();
    expect(meta).toEqual({
      name: 'lin',
      versions: ['7'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
    });
    expect((await fetch(`${lin.url}/v2/models/other`)).status).toBe(404);
    expect((await fetch(`${lin.url}/v2/models/lin/versions/8/infer`, { method: 'POST', body: '{}' })).status).toBe(404);
  });

  it('answers GET /v2 and GET /v2/ alike, advertising the binary tensor data extension', async () => {
    const plain = await fetch(`${lin.url}/v2`);
    const slash = await fetch(`${lin.url}/v2/`);
    expect(plain.status).toBe(200);
    expect(slash.status).toBe(200);
    const meta = (await plain.json()) as { name: string; version: string; extensions: string[] };
    expect(await slash.json()).toEqual(meta);
    expect(meta.name).toBe('modeld');
    expect(meta.extensions).toContain('binary_tensor_data');
  });

  it.each([
    ['a number', 7],
    ['an object', { a: 1 }],
    ['null', null],
  ])('refuses a request id that is %s with a 400 (the id is a string in OIP v2)', async (_what, id) => {
    const r = await post(`${lin.url}/v2/models/lin/infer`, { id, inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [0, 0] }] });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/"id" must be a string/);
  });

  it.each([
    ['malformed JSON', '{"inputs": [', /not valid JSON/],
    ['no inputs', { inputs: [] }, /non-empty array/],
    ['wrong datatype', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'INT32', data: [1, 2] }] }, /datatype INT32 does not match the model's FP32/],
    ['unknown datatype', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP8', data: [1, 2] }] }, /unsupported datatype/],
    ['wrong rank', { inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1, 2] }] }, /1 dimensions; the model expects 2/],
    ['wrong fixed dimension', { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }, /does not match the model's \[-1, 2\]/],
    ['data length not matching shape', { inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3] }] }, /needs 4 values, "data" has 3/],
    ['a string in FP32 data', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 'a'] }] }, /data\[1\] must be a number/],
    ['an unknown input', { inputs: [{ name: 'z', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }, /unknown input "z"/],
    ['a negative dimension', { inputs: [{ name: 'x', shape: [-1, 2], datatype: 'FP32', data: [1, 2] }] }, /non-negative integers/],
    ['a huge shape', { inputs: [{ name: 'x', shape: [1e12, 2], datatype: 'FP32', data: [1, 2] }] }, /more than the limit/],
  ])('refuses %s with a 400 naming the problem, and keeps answering', async (_what, body, msg) => {
    const r = await post(`${lin.url}/v2/models/lin/infer`, body);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(msg);
    const ok = await post(`${lin.url}/v2/models/lin/infer`, { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [0, 0] }] });
    expect(ok.body.outputs[0].data).toEqual([-1, -1]);
  });

  it('refuses a body past --max-body-bytes with 413', async () => {
    writeLinearModel(join(root, 'small', 'model.onnx'), { w: 1, b: 0 });
    const s = await startServer(join(root, 'small'), 'small', '1', ['--max-body-bytes', '1000']);
    const data = Array(500).fill(1.5);
    const r = await post(`${s.url}/v2/models/small/infer`, { inputs: [{ name: 'x', shape: [500, 1], datatype: 'FP32', data }] });
    expect(r.status).toBe(413);
    expect(r.body.error).toMatch(/over the limit of 1000/);
    expect((await post(`${s.url}/v2/models/small/infer`, { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [2] }] })).body.outputs[0].data).toEqual([2]);
  });

  it.each([
    ['FP64', 'DOUBLE', [1.25, -2], [3.5, -3]],
    ['INT32', 'INT32', [3, -4], [7, -7]],
    ['INT64', 'INT64', [3, -4], [7, -7]],
  ] as const)('computes with %s tensors', async (oip, onnx, x, y) => {
    const dir = join(root, `t-${oip}`);
    writeLinearModel(join(dir, 'model.onnx'), { w: 2, b: 1, dataType: onnx });
    const s = await startServer(dir, 'm', '1');
    const r = await post(`${s.url}/v2/models/m/infer`, { inputs: [{ name: 'x', shape: [2, 1], datatype: oip, data: x }] });
    expect(r.body.outputs).toEqual([{ name: 'y', datatype: oip, shape: [2, 1], data: y }]);
  });

  it('passes BOOL tensors through an Identity model', async () => {
    const dir = join(root, 'bool');
    writeIdentityModel(join(dir, 'model.onnx'), { dataType: 'BOOL', dims: 3 });
    const s = await startServer(dir, 'b', '1');
    const r = await post(`${s.url}/v2/models/b/infer`, { inputs: [{ name: 'x', shape: [1, 3], datatype: 'BOOL', data: [true, false, true] }] });
    expect(r.body.outputs).toEqual([{ name: 'y', datatype: 'BOOL', shape: [1, 3], data: [true, false, true] }]);
    const bad = await post(`${s.url}/v2/models/b/infer`, { inputs: [{ name: 'x', shape: [1, 3], datatype: 'BOOL', data: [true, 2, true] }] });
    expect(bad.status).toBe(400);
  });

  it('exits with the "cannot serve" code and the reason when the model file is broken', async () => {
    const dir = join(root, 'broken');
    writeBrokenModel(join(dir, 'model.onnx'));
    const port = await freePort();
    const [cmd, ...pre] = builtinServerCommand();
    const server = spawnTree(cmd, [...pre, '--port', String(port), '--model-dir', dir, '--model-name', 'broken', '--version', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(server);
    let err = '';
    server.child.stderr!.on('data', (c) => (err += c));
    const { code } = await server.exited;
    expect(code).toBe(EXIT_UNSERVABLE);
    expect(err).toMatch(/cannot load model "broken" version "3".*Protobuf parsing failed/);
  });
});
