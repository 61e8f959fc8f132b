import { decodeInferReply, encodeWithBinary, HEADER_LENGTH } from '../../agent/runtime/oip-binary.js';
import { writeChannelMeanModel } from '../models/onnx-writer.js';
import { mergeLoads, runLoad, type LoadResult } from './loadgen.js';
import { median, round } from './stats.js';

// binarySpeedup (issue 10): requests/s for an image-sized input, [1,3,224,224] FP32, sent with
// the binary tensor data extension vs as a JSON array of floats, through the same endpoint at the
// same concurrency. The model (ReduceMean over height and width) does next to no work, so the
// figure is the cost of carrying the tensor.

export const IMAGE_SHAPE: readonly number[] = [1, 3, 224, 224];

/** Writes the benchmark's model (x FP32 [N,3,224,224] -> y [N,3]) as `<dir>/model.onnx`. */
export const writeBinaryBenchModel = (dir: string) => writeChannelMeanModel(`${dir}/model.onnx`, { channels: 3, height: 224, width: 224 });

/** An image-like tensor: values in [0, 1) as float32, as a normalised image would hold. */
function imageValues(): Float32Array {
  const n = IMAGE_SHAPE.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    v[i] = (s >>> 8) / 2 ** 24;
  }
  return v;
}

/** The two request bodies (same tensor), with the headers each needs. */
export function binaryBenchBodies() {
  const values = imageValues();
  const input = { name: 'x', datatype: 'FP32', shape: [...IMAGE_SHAPE] };
  const json = encodeWithBinary({ inputs: [{ ...input, data: Array.from(values) }] }, []);
  const bytes = Buffer.from(values.buffer);
  const binary = encodeWithBinary({ inputs: [{ ...input, parameters: { binary_data_size: bytes.length } }], parameters: { binary_data_output: true } }, [bytes]);
  return { values, json, binary };
}

export interface BinarySpeedup {
  binarySpeedup: number;
  jsonReqPerSec: number;
  binaryReqPerSec: number;
  jsonP50Ms: number;
  binaryP50Ms: number;
  jsonBodyBytes: number;
  binaryBodyBytes: number;
  runs: number;
}

/**
 * Requests/s with binary tensors vs JSON for a [1,3,224,224] FP32 input to `modelName` at
 * `endpointBaseUrl`: `runs` (>= 3) runs of alternating JSON and binary slices; the speedup is the
 * median of the runs' ratios. Both answers are checked once to agree before anything is timed.
 */
export async function measureBinarySpeedup(
  endpointBaseUrl: string,
  modelName: string,
  opts: { connections?: number; sliceMs?: number; slices?: number; runs?: number; log?: (s: string) => void } = {},
): Promise<BinarySpeedup> {
  const connections = opts.connections ?? 4;
  const sliceMs = opts.sliceMs ?? 1000;
  const slices = opts.slices ?? 3;
  const runs = Math.max(3, opts.runs ?? 3);
  const path = `/v2/models/${encodeURIComponent(modelName)}/infer`;
  const { values, json, binary } = binaryBenchBodies();

  // The same answer both ways (and a wrong endpoint fails here, not as a silent 0 req/s).
  const ask = async (b: { headers: Record<string, string>; body: Buffer }) => {
    const res = await fetch(`${endpointBaseUrl}${path}`, { method: 'POST', headers: b.headers, body: b.body });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw new Error(`binary bench: ${modelName} answered ${res.status}: ${body.toString().slice(0, 200)}`);
    const r = decodeInferReply(body, res.headers.get(HEADER_LENGTH));
    const bin = r.binary.get('y');
    return bin ? Array.from(new Float32Array(Uint8Array.from(bin).buffer)) : (r.header.outputs[0].data as number[]);
  };
  const viaJson = await ask(json);
  const viaBinary = await ask(binary);
  if (viaJson.length !== 3 || viaJson.some((v, i) => v !== viaBinary[i])) throw new Error(`binary bench: JSON and binary answers differ: ${viaJson} vs ${viaBinary}`);
  const mean = values.subarray(0, 224 * 224).reduce((a, b) => a + b, 0) / (224 * 224);
  if (Math.abs(viaJson[0] - mean) > 1e-3) throw new Error(`binary bench: channel 0 mean ${viaJson[0]}, expected about ${mean}`);

  const load = (b: { headers: Record<string, string>; body: Buffer }, durationMs: number) => runLoad({ origin: endpointBaseUrl, path, body: b.body, headers: b.headers, connections, durationMs });
  await load(json, sliceMs);
  await load(binary, sliceMs);
  const per: Array<{ j: LoadResult; b: LoadResult }> = [];
  for (let r = 0; r < runs; r++) {
    const js: LoadResult[] = [];
    const bs: LoadResult[] = [];
    for (let i = 0; i < slices; i++) {
      js.push(await load(json, sliceMs));
      bs.push(await load(binary, sliceMs));
    }
    const j = mergeLoads(js);
    const b = mergeLoads(bs);
    if (j.failed || b.failed) throw new Error(`binary bench: failed requests (JSON ${JSON.stringify(j.statuses)}, binary ${JSON.stringify(b.statuses)})`);
    opts.log?.(`  binary run ${r + 1}/${runs}: JSON ${round(j.reqPerSec, 0)} req/s, binary ${round(b.reqPerSec, 0)} req/s (x${round(b.reqPerSec / j.reqPerSec, 2)})`);
    per.push({ j, b });
  }
  return {
    binarySpeedup: round(median(per.map((p) => p.b.reqPerSec / p.j.reqPerSec)), 2),
    jsonReqPerSec: round(median(per.map((p) => p.j.reqPerSec)), 0),
    binaryReqPerSec: round(median(per.map((p) => p.b.reqPerSec)), 0),
    jsonP50Ms: round(median(per.map((p) => p.j.p50Ms)), 3),
    binaryP50Ms: round(median(per.map((p) => p.b.p50Ms)), 3),
    jsonBodyBytes: json.body.length,
    binaryBodyBytes: binary.body.length,
    runs,
  };
}
