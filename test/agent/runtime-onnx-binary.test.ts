import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeInferReply, encodeWithBinary, HEADER_LENGTH } from '../../agent/runtime/oip-binary.js';
import { loadOipModel, type OipModel } from '../../agent/runtime/oip-model.js';
import { ELEMENT_BYTES, OIP_TO_ORT, OipError, type OipDatatype } from '../../agent/runtime/oip-tensors.js';
import { builtinServerCommand } from '../../agent/runtime/runtime-plan.js';
import type { OnnxElemType } from '../../scripts/models/onnx-writer.js';
import { writeIdentityModel, writeLinearModel } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { waitFor } from '../helpers/wait.js';

// The binary tensor data extension on real onnxruntime sessions: every datatype through an
// Identity model in a session, and the HTTP side through a real onnx-server process.

const SEED = Number(process.env.FC_SEED ?? 20260511);
console.info(`runtime-onnx-binary: fast-check seed ${SEED} (FC_SEED=<n> to replay another)`);

const ONNX_TYPE: Record<OipDatatype, OnnxElemType> = {
  FP16: 'FLOAT16',
  FP32: 'FLOAT',
  FP64: 'DOUBLE',
  INT8: 'INT8',
  INT16: 'INT16',
  INT32: 'INT32',
  INT64: 'INT64',
  UINT8: 'UINT8',
  UINT16: 'UINT16',
  UINT32: 'UINT32',
  UINT64: 'UINT64',
  BOOL: 'BOOL',
};
const DATATYPES = Object.keys(OIP_TO_ORT) as OipDatatype[];
const COLS = 3;

let root: string;
const trees: ProcessTree[] = [];
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'modeld-onnx-bin-'));
});
afterAll(async () => {
  for (const t of trees.splice(0)) await t.end();
  rmSync(root, { recursive: true, force: true });
});

/** Random bytes that are valid elements of `datatype` (BOOL bytes are 0 or 1). */
const elementBytes = (datatype: OipDatatype, rows: number) =>
  fc
    .uint8Array({ minLength: rows * COLS * ELEMENT_BYTES[datatype], maxLength: rows * COLS * ELEMENT_BYTES[datatype] })
    .map((b) => (datatype === 'BOOL' ? b.map((v) => v & 1) : b));

describe('binary tensors through a real onnxruntime session, every datatype', () => {
  const models = new Map<OipDatatype, OipModel>();
  beforeAll(async () => {
    for (const dt of DATATYPES) {
      const dir = join(root, `id-${dt}`);
      writeIdentityModel(join(dir, 'model.onnx'), { dataType: ONNX_TYPE[dt], dims: COLS });
      models.set(dt, await loadOipModel({ modelDir: dir, modelName: `id-${dt.toLowerCase()}`, version: '1', threads: 1, maxBodyBytes: 1 << 20, backend: 'native' }));
    }
  });
  afterAll(async () => {
    for (const m of models.values()) await m.release();
  });

  it.each(DATATYPES)('%s: the bytes sent come back unchanged as binary output', async (dt) => {
    const m = models.get(dt)!;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }).chain((rows) => elementBytes(dt, rows).map((bytes) => ({ rows, bytes }))), async ({ rows, bytes }) => {
        const req = encodeWithBinary(
          { id: 'p', inputs: [{ name: 'x', datatype: dt, shape: [rows, COLS], parameters: { binary_data_size: bytes.length } }], parameters: { binary_data_output: true } },
          [bytes],
        );
        const reply = await m.infer(req.body, req.headers);
        expect(reply.status).toBe(200);
        expect(reply.headers['content-type']).toBe('application/octet-stream');
        const { header, binary } = decodeInferReply(reply.body, reply.headers[HEADER_LENGTH]);
        expect(header.outputs).toEqual([{ name: 'y', datatype: dt, shape: [rows, COLS], parameters: { binary_data_size: bytes.length } }]);
        expect(header.id).toBe('p');
        expect(Buffer.from(binary.get('y')!)).toEqual(Buffer.from(bytes));
      }),
      { seed: SEED, numRuns: 20 },
    );
  });

  it('FP16 from JSON numbers comes back as binary16 bits, and as the same numbers in JSON', async () => {
    const m = models.get('FP16')!;
    const values = [1, -2.5, 0.333251953125, 65504, 6.103515625e-5, 0];
    const json = await m.infer(Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP16', shape: [2, 3], data: values }] })), {});
    expect(JSON.parse(json.body.toString()).outputs[0].data).toEqual(values);
    const bin = await m.infer(Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP16', shape: [2, 3], data: values }], outputs: [{ name: 'y', parameters: { binary_data: true } }] })), {});
    const bits = decodeInferReply(bin.body, bin.headers[HEADER_LENGTH]).binary.get('y')!;
    expect(Array.from(new Uint16Array(Uint8Array.from(bits).buffer))).toEqual([0x3c00, 0xc100, 0x3555, 0x7bff, 0x0400, 0]);
  });

  it('refuses a binary size that does not match the shape, naming both', async () => {
    const m = models.get('INT32')!;
    const req = encodeWithBinary({ inputs: [{ name: 'x', datatype: 'INT32', shape: [1, 3], parameters: { binary_data_size: 8 } }] }, [Buffer.alloc(8)]);
    await expect(m.infer(req.body, req.headers)).rejects.toThrow(OipError);
    await expect(m.infer(req.body, req.headers)).rejects.toThrow(/binary_data_size 8 does not match shape \[1,3\] x 4 bytes \(INT32\) = 12/);
  });
});

describe('binary tensor data extension over HTTP (a real onnx-server process)', () => {
  let url: string;
  let out = '';
  beforeAll(async () => {
    const dir = join(root, 'lin');
    writeLinearModel(join(dir, 'model.onnx'), { w: 2, b: 1, dims: 2 });
    const port = await freePort();
    const [cmd, ...pre] = builtinServerCommand();
    const tree = spawnTree(cmd, [...pre, '--port', String(port), '--model-dir', dir, '--model-name', 'lin', '--version', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    trees.push(tree);
    tree.child.stdout!.on('data', (c) => (out += c));
    tree.child.stderr!.on('data', (c) => (out += c));
    url = `http://127.0.0.1:${port}`;
    await waitFor(() => fetch(`${url}/v2/health/ready`).then((r) => r.status === 200, () => false), undefined, `lin to be ready: ${out}`);
  });

  const xs = Float32Array.of(1, 2, 3, 4);
  const binaryInput = { name: 'x', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } };
  const post = (body: Buffer, headers: Record<string, string>) => fetch(`${url}/v2/models/lin/infer`, { method: 'POST', headers, body });

  it('takes binary input and answers binary output with Inference-Header-Content-Length', async () => {
    const req = encodeWithBinary({ id: 'b1', inputs: [binaryInput], outputs: [{ name: 'y', parameters: { binary_data: true } }] }, [Buffer.from(xs.buffer)]);
    const res = await post(req.body, req.headers);
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    expect(Number(res.headers.get('content-length'))).toBe(body.length);
    const { header, binary } = decodeInferReply(body, res.headers.get(HEADER_LENGTH));
    expect(header).toEqual({ model_name: 'lin', model_version: '4', id: 'b1', outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } }] });
    expect(Array.from(new Float32Array(Uint8Array.from(binary.get('y')!).buffer))).toEqual([3, 5, 7, 9]);
  });

  it('answers JSON for binary input unless binary output is asked for', async () => {
    const req = encodeWithBinary({ inputs: [binaryInput] }, [Buffer.from(xs.buffer)]);
    const res = await post(req.body, req.headers);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get(HEADER_LENGTH)).toBeNull();
    expect(((await res.json()) as any).outputs[0].data).toEqual([3, 5, 7, 9]);
  });

  it('a per-output binary_data: false overrides binary_data_output: true', async () => {
    const req = encodeWithBinary({ inputs: [binaryInput], parameters: { binary_data_output: true }, outputs: [{ name: 'y', parameters: { binary_data: false } }] }, [Buffer.from(xs.buffer)]);
    const res = await post(req.body, req.headers);
    expect(((await res.json()) as any).outputs[0].data).toEqual([3, 5, 7, 9]);
  });

  it.each([
    ['a negative header length', '-1', Buffer.from(xs.buffer), /Inference-Header-Content-Length must be a non-negative integer/],
    ['a header length over the body', '100000', Buffer.from(xs.buffer), /is more than the body's/],
    ['trailing bytes', undefined, Buffer.concat([Buffer.from(xs.buffer), Buffer.from([1])]), /1 bytes after the JSON header are not claimed/],
    ['too few bytes', undefined, Buffer.from(xs.buffer).subarray(0, 12), /goes past the body/],
  ])('refuses %s with a 400 and a reason, and keeps answering', async (_what, headerLength, tail, msg) => {
    const json = Buffer.from(JSON.stringify({ inputs: [binaryInput] }));
    const res = await post(Buffer.concat([json, tail]), { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: headerLength ?? String(json.length) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(msg);
    const ok = encodeWithBinary({ inputs: [binaryInput] }, [Buffer.from(xs.buffer)]);
    expect((await post(ok.body, ok.headers)).status).toBe(200);
  });

  it('refuses binary bytes sent without the header length, with a hint', async () => {
    const json = Buffer.from(JSON.stringify({ inputs: [binaryInput] }));
    const res = await post(Buffer.concat([json, Buffer.from(xs.buffer)]), { 'content-type': 'application/octet-stream' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/not valid JSON.*needs the Inference-Header-Content-Length header/);
  });
});
