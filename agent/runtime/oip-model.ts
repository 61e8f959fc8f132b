import type { IncomingHttpHeaders } from 'node:http';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_VERSION } from '../version.js';
import { binaryOutputs, encodeWithBinary, HEADER_LENGTH, sliceBinaryInputs, splitInferBody, tensorBytes } from './oip-binary.js';
import { decodeInput, encodeData, OipError, oipDatatype, oipShape, type TensorSpec } from './oip-tensors.js';
import { ortBackend, type OnnxBackend, type OnnxBackendChoice } from './ort-backend.js';

// One loaded ONNX model version answering Open Inference Protocol v2 requests. No HTTP server
// here: whoever owns the socket (the per-instance onnx-server, or a host holding many models)
// reads the body, routes to a model, and writes the reply this returns.

export interface OipModelOptions {
  modelDir: string;
  modelName: string;
  version: string;
  /** onnxruntime's intra-op threads for this session. */
  threads: number;
  /** Bounds the elements of one request (half a byte each at least). */
  maxBodyBytes: number;
  /** Which onnxruntime serves (serving.onnxBackend); default auto: native, else WASM. */
  backend?: OnnxBackendChoice;
}

/** An answer ready to write: status, headers, and the whole body. */
export interface OipReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface OipModel {
  readonly modelName: string;
  readonly version: string;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  /** The onnxruntime that serves this session: onnxruntime-node, or onnxruntime-web's WASM build. */
  readonly backend: OnnxBackend;
  /** The model metadata response (GET /v2/models/<name>[/versions/<v>]). */
  metadata(): Record<string, unknown>;
  /** Answers POST .../infer; throws OipError (status 4xx) for a request the model refuses. */
  infer(body: Buffer, headers: IncomingHttpHeaders): Promise<OipReply>;
  /** Frees the session; the model answers nothing after. */
  release(): Promise<void>;
}

/** The Open Inference Protocol extensions this runtime implements (Triton's names). */
export const OIP_EXTENSIONS: readonly string[] = ['binary_tensor_data'];

/** The server metadata response (GET /v2, and GET /v2/). */
export const serverMetadata = (): { name: string; version: string; extensions: string[] } => ({ name: 'modeld', version: AGENT_VERSION, extensions: [...OIP_EXTENSIONS] });

/** True for the server metadata path; Triton and KServe answer it with or without the trailing slash. */
export const isServerMetadataPath = (path: string): boolean => path === '/v2' || path === '/v2/';

/** The one .onnx file of a version directory (at the top, or one directory down). */
export function findModelFile(dir: string): string {
  const found: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith('.onnx')) found.push(join(dir, e.name));
  }
  if (found.length === 0) {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      for (const f of readdirSync(join(dir, e.name), { withFileTypes: true })) {
        if (f.isFile() && f.name.endsWith('.onnx')) found.push(join(dir, e.name, f.name));
      }
    }
  }
  if (found.length === 0) throw new Error(`no .onnx file in ${dir}`);
  if (found.length > 1) throw new Error(`more than one .onnx file in ${dir}: ${found.map((f) => f.slice(dir.length + 1)).join(', ')}`);
  return found[0];
}

type Session = import('onnxruntime-node').InferenceSession;
type Tensor = import('onnxruntime-node').Tensor;

const tensorSpecs = (meta: Session['inputMetadata']): TensorSpec[] =>
  meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'unknown', shape: [] }));

export const jsonReply = (status: number, body: unknown): OipReply => {
  const buf = Buffer.from(JSON.stringify(body));
  return { status, headers: { 'content-type': 'application/json', 'content-length': String(buf.length) }, body: buf };
};

/** Loads the version's model file; rejects with the reason when it cannot be served. */
export async function loadOipModel(o: OipModelOptions): Promise<OipModel> {
  const file = findModelFile(o.modelDir);
  const { ort, backend, executionProviders } = await ortBackend(o.backend ?? 'auto');
  const session = await ort.InferenceSession.create(file, {
    executionProviders,
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const inputs = tensorSpecs(session.inputMetadata);
  const outputs = tensorSpecs(session.outputMetadata);
  const maxElements = Math.max(1, Math.floor(o.maxBodyBytes / 2));

  async function infer(body: Buffer, headers: IncomingHttpHeaders): Promise<OipReply> {
    const split = splitInferBody(body, headers[HEADER_LENGTH]);
    let parsed: unknown;
    try {
      parsed = JSON.parse(split.header.toString('utf8'));
    } catch (err) {
      const hint = split.binaryExtension ? '' : ' (a body with binary tensor data needs the Inference-Header-Content-Length header)';
      throw new OipError(`request ${split.binaryExtension ? 'header' : 'body'} is not valid JSON: ${(err as Error).message}${hint}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new OipError('request body must be a JSON object');
    const r = parsed as { id?: unknown; inputs?: unknown; outputs?: unknown };
    // OIP v2: "id" is an optional string; anything else is refused rather than dropped.
    if (r.id !== undefined && typeof r.id !== 'string') throw new OipError(`"id" must be a string, got ${r.id === null ? 'null' : typeof r.id}`);
    if (!Array.isArray(r.inputs) || r.inputs.length === 0) throw new OipError('"inputs" must be a non-empty array');
    const binaryIn = sliceBinaryInputs(r.inputs, split);
    const feeds: Record<string, Tensor> = {};
    r.inputs.forEach((raw, i) => {
      const name = (raw as { name?: unknown })?.name;
      if (typeof name !== 'string') throw new OipError('every input needs a "name"');
      const spec = inputs.find((x) => x.name === name);
      if (!spec) throw new OipError(`unknown input "${name}"; the model's inputs are ${inputs.map((x) => `"${x.name}"`).join(', ')}`);
      if (feeds[name]) throw new OipError(`input "${name}" is given twice`);
      const t = decodeInput(raw, spec, maxElements, binaryIn[i]);
      const tensor = new ort.Tensor(t.type, t.data, t.shape);
      // Where the JS engine has Float16Array, Tensor wraps float16 bits in one, and
      // onnxruntime-node 1.30 reads a Float16Array as empty ("not enough space"): keep the bits.
      if (t.type === 'float16') (tensor as unknown as { cpuData: unknown }).cpuData = t.data;
      feeds[name] = tensor;
    });
    const missing = inputs.filter((i) => !feeds[i.name]);
    if (missing.length) throw new OipError(`missing input ${missing.map((i) => `"${i.name}"`).join(', ')}`);
    let wanted = outputs.map((x) => x.name);
    if (r.outputs !== undefined) {
      if (!Array.isArray(r.outputs)) throw new OipError('"outputs" must be an array');
      wanted = r.outputs.map((x) => {
        const name = (x as { name?: unknown })?.name;
        if (typeof name !== 'string' || !outputs.some((y) => y.name === name)) throw new OipError(`unknown output ${JSON.stringify(name)}`);
        return name;
      });
    }
    const asBinary = binaryOutputs(parsed as Record<string, unknown>, wanted);
    let result: Record<string, Tensor>;
    try {
      result = await session.run(feeds, wanted);
    } catch (err) {
      // onnxruntime rejects inputs the declared signature let through (e.g. broadcast mismatch).
      throw new OipError(`inference failed: ${(err as Error).message}`);
    }
    const binaries: Buffer[] = [];
    const reply = {
      model_name: o.modelName,
      model_version: o.version,
      ...(typeof r.id === 'string' ? { id: r.id } : {}),
      outputs: wanted.map((name, i) => {
        const t = result[name];
        const head = { name, datatype: oipDatatype(t.type), shape: Array.from(t.dims) };
        if (!asBinary[i]) return { ...head, data: encodeData(t.type, t.data as ArrayLike<unknown>) };
        if (!ArrayBuffer.isView(t.data)) throw new OipError(`output "${name}" of type ${t.type} cannot be sent as binary data`);
        const bytes = tensorBytes(t.data);
        binaries.push(bytes);
        return { ...head, parameters: { binary_data_size: bytes.length } };
      }),
    };
    const { headers: h, body: b } = encodeWithBinary(reply, binaries);
    return { status: 200, headers: h, body: b };
  }

  return {
    modelName: o.modelName,
    version: o.version,
    inputs,
    outputs,
    backend,
    metadata: () => ({
      name: o.modelName,
      versions: [o.version],
      platform: 'onnxruntime_onnx',
      inputs: inputs.map((t) => ({ name: t.name, datatype: oipDatatype(t.type), shape: oipShape(t.shape) })),
      outputs: outputs.map((t) => ({ name: t.name, datatype: oipDatatype(t.type), shape: oipShape(t.shape) })),
    }),
    infer,
    release: () => session.release(),
  };
}
