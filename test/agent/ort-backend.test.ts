import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWithBinary } from '../../agent/runtime/oip-binary.js';
import { loadOipModel, type OipModel, type OipModelOptions } from '../../agent/runtime/oip-model.js';
import { ELEMENT_BYTES, type OipDatatype } from '../../agent/runtime/oip-tensors.js';
import { loadOrtBackend, PROBE_MODEL_BASE64, probeOrtBackend, realImporters } from '../../agent/runtime/ort-backend.js';
import { builtinServerCommand } from '../../agent/runtime/runtime-plan.js';
import { identityModelBytes, type OnnxElemType } from '../../scripts/models/onnx-writer.js';
import { writeIdentityModel, writeLinearModel } from '../helpers/models.js';
import { offlineNodeConfig, runCli, writeConfig } from '../helpers/modeld-cli.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { waitFor } from '../helpers/wait.js';

// The WASM fallback (onnxruntime-web in Node) against the native backend, on this x64 machine by
// forcing it: the same model and the same request give the same answer, byte for byte.

const SEED = Number(process.env.FC_SEED ?? 20260512);
console.info(`ort-backend: fast-check seed ${SEED} (FC_SEED=<n> to replay another)`);

let root: string;
const trees: ProcessTree[] = [];
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'modeld-ort-backend-'));
});
afterAll(async () => {
  for (const t of trees.splice(0)) await t.end();
  rmSync(root, { recursive: true, force: true });
});

describe('backend choice', () => {
  it('auto falls back to WASM when onnxruntime-node does not load, and says why', async () => {
    const noBinary = async () => {
      throw new Error("Cannot find module '../bin/napi-v6/linux/arm/onnxruntime_binding.node'\nRequire stack: ...");
    };
    const loaded = await loadOrtBackend('auto', { native: noBinary, wasm: realImporters.wasm });
    expect(loaded.backend).toBe('wasm');
    expect(loaded.executionProviders).toEqual(['wasm']);
    expect(loaded.nativeError).toBe("Cannot find module '../bin/napi-v6/linux/arm/onnxruntime_binding.node'");
    const probe = await probeOrtBackend('auto', (c) => loadOrtBackend(c, { native: noBinary, wasm: realImporters.wasm }));
    expect(probe).toMatchObject({ backend: 'wasm', nativeError: expect.stringMatching(/onnxruntime_binding/) });
  });

  it('auto prefers native; native forced does not fall back', async () => {
    expect((await loadOrtBackend('auto')).backend).toBe('native');
    const fails = async () => {
      throw new Error('no binary');
    };
    await expect(loadOrtBackend('native', { native: fails, wasm: realImporters.wasm })).rejects.toThrow(/no binary/);
  });

  it('the probe model is the writer\'s identity model, and both backends answer it', async () => {
    expect(Buffer.from(identityModelBytes({ dataType: 'FLOAT', dims: 1 })).toString('base64')).toBe(PROBE_MODEL_BASE64);
    expect((await probeOrtBackend('native')).backend).toBe('native');
    const w = await probeOrtBackend('wasm');
    expect(w.backend).toBe('wasm');
    expect(w.version).toMatch(/^\d+\.\d+/);
  });
});

describe('WASM answers the same as native', () => {
  const pairs: Array<{ native: OipModel; wasm: OipModel }> = [];
  const load = async (dir: string, name: string) => {
    const o: OipModelOptions = { modelDir: dir, modelName: name, version: '1', threads: 1, maxBodyBytes: 1 << 22 };
    const pair = { native: await loadOipModel({ ...o, backend: 'native' }), wasm: await loadOipModel({ ...o, backend: 'wasm' }) };
    pairs.push(pair);
    expect(pair.native.backend).toBe('native');
    expect(pair.wasm.backend).toBe('wasm');
    expect(pair.wasm.metadata()).toEqual(pair.native.metadata());
    return pair;
  };
  afterAll(async () => {
    for (const p of pairs) await Promise.all([p.native.release(), p.wasm.release()]);
  });

  const same = async (pair: { native: OipModel; wasm: OipModel }, req: { body: Buffer; headers: Record<string, string> }) => {
    const [n, w] = await Promise.all([pair.native.infer(req.body, req.headers), pair.wasm.infer(req.body, req.headers)]);
    expect(w.status).toBe(n.status);
    expect(w.headers).toEqual(n.headers);
    expect(w.body.equals(n.body), `native ${n.body.toString('latin1').slice(0, 200)}\nwasm ${w.body.toString('latin1').slice(0, 200)}`).toBe(true);
  };

  it.each([
    ['FLOAT', 'FP32', Float32Array],
    ['DOUBLE', 'FP64', Float64Array],
    ['INT32', 'INT32', Int32Array],
  ] as const)('y = x * w + b in %s, random inputs as JSON and as binary', async (onnx, oip, Ctor) => {
    const dir = join(root, `lin-${onnx}`);
    writeLinearModel(join(dir, 'model.onnx'), { w: 3, b: -2, dims: 4, dataType: onnx });
    const pair = await load(dir, `lin-${oip.toLowerCase()}`);
    const values =
      oip === 'INT32'
        ? fc.array(fc.integer({ min: -1e6, max: 1e6 }), { minLength: 4, maxLength: 32 })
        : fc.array(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).map((v) => (oip === 'FP32' ? Math.fround(v) : v)), { minLength: 4, maxLength: 32 });
    await fc.assert(
      fc.asyncProperty(values, fc.boolean(), async (vs, binary) => {
        const rows = Math.floor(vs.length / 4);
        const data = vs.slice(0, rows * 4).map((v) => (Object.is(v, -0) ? 0 : v));
        const input = { name: 'x', datatype: oip, shape: [rows, 4] };
        const bytes = Buffer.from(Ctor.from(data).buffer);
        const req = binary
          ? encodeWithBinary({ inputs: [{ ...input, parameters: { binary_data_size: bytes.length } }], parameters: { binary_data_output: true } }, [bytes])
          : encodeWithBinary({ inputs: [{ ...input, data }] }, []);
        await same(pair, req);
      }),
      { seed: SEED, numRuns: 25 },
    );
  });

  it.each([
    ['FLOAT16', 'FP16'],
    ['INT8', 'INT8'],
    ['INT64', 'INT64'],
    ['UINT8', 'UINT8'],
    ['UINT64', 'UINT64'],
    ['BOOL', 'BOOL'],
  ] as const)('Identity in %s passes the same bytes on both', async (onnx, oip) => {
    const dir = join(root, `id-${onnx}`);
    writeIdentityModel(join(dir, 'model.onnx'), { dataType: onnx as OnnxElemType, dims: 2 });
    const pair = await load(dir, `id-${oip.toLowerCase()}`);
    const n = 6 * ELEMENT_BYTES[oip as OipDatatype];
    const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (oip === 'BOOL' ? i & 1 : (i * 37) & 0xff)));
    await same(pair, encodeWithBinary({ inputs: [{ name: 'x', datatype: oip, shape: [3, 2], parameters: { binary_data_size: n } }], parameters: { binary_data_output: true } }, [bytes]));
    await same(pair, encodeWithBinary({ inputs: [{ name: 'x', datatype: oip, shape: [3, 2], parameters: { binary_data_size: n } }] }, [bytes]));
  });
});

describe('serving.onnxBackend through the process and the CLI', () => {
  it('onnx-server --backend wasm serves and says which backend serves', async () => {
    const dir = join(root, 'srv');
    writeLinearModel(join(dir, 'model.onnx'), { w: 2, b: 1, dims: 2 });
    const port = await freePort();
    const [cmd, ...pre] = builtinServerCommand();
    const tree = spawnTree(cmd, [...pre, '--port', String(port), '--model-dir', dir, '--model-name', 'lin', '--version', '1', '--backend', 'wasm'], { stdio: ['ignore', 'pipe', 'pipe'] });
    trees.push(tree);
    let out = '';
    tree.child.stdout!.on('data', (c) => (out += c));
    tree.child.stderr!.on('data', (c) => (out += c));
    const url = `http://127.0.0.1:${port}`;
    await waitFor(() => fetch(`${url}/v2/health/ready`).then((r) => r.status === 200, () => false), undefined, 'the wasm server to be ready');
    const res = await fetch(`${url}/v2/models/lin/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }) });
    expect(((await res.json()) as any).outputs[0].data).toEqual([3, 5]);
    // The line is written right after the model is set ready: wait for it, not for readiness.
    await waitFor(() => /serving "lin" version "1" on \S+ \(onnxruntime wasm\)/.test(out), undefined, `the serving line naming the backend: ${out}`);
  });

  it('onnx-server refuses an unknown --backend with the "cannot serve" code', async () => {
    const [cmd, ...pre] = builtinServerCommand();
    const tree = spawnTree(cmd, [...pre, '--port', String(await freePort()), '--model-dir', root, '--model-name', 'x', '--version', '1', '--backend', 'gpu'], { stdio: ['ignore', 'ignore', 'pipe'] });
    trees.push(tree);
    let err = '';
    tree.child.stderr!.on('data', (c) => (err += c));
    expect((await tree.exited).code).toBe(78);
    expect(err).toMatch(/--backend must be one of auto, native, wasm/);
  });

  it('modeld doctor says which backend serves: native by default, WASM when forced', async () => {
    const work = mkdtempSync(join(root, 'doctor-'));
    for (const [backend, want] of [
      ['auto', /onnxruntime-node \S+ serves on linux\/\w+ \(a probe model answered\)/],
      ['wasm', /onnxruntime-web \S+ WASM backend serves on linux\/\w+ .*serving.onnxBackend is wasm/],
    ] as const) {
      const file = writeConfig(await offlineNodeConfig(work, { serving: { onnxBackend: backend } }), join(work, `${backend}.yaml`));
      const r = await runCli(file, ['doctor', '--json', '--timeout', '300']);
      const check = (JSON.parse(r.stdout).checks as Array<{ name: string; status: string; message: string }>).find((c) => c.name === 'runtime:onnx (built in)');
      expect(check, r.stdout + r.stderr).toMatchObject({ status: 'ok', message: expect.stringMatching(want) });
    }
  });
});
