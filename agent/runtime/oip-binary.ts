import { OipError } from './oip-tensors.js';

// The binary tensor data extension of the Open Inference Protocol (Triton's
// docs/protocol/extension_binary_data.md): a body is a JSON header followed by raw tensor bytes;
// the `Inference-Header-Content-Length` header gives the JSON's length, and each tensor sent as
// bytes says how many in `parameters.binary_data_size`, in the order the tensors are listed.
// Pure: plain buffers in and out, no HTTP and no onnxruntime here.
//
// Raw bytes are little-endian. Typed arrays use the host's byte order, and every target modeld
// runs on (x86-64, arm64, armv7) is little-endian.

export const HEADER_LENGTH = 'inference-header-content-length';

const NON_NEGATIVE_INTEGER = /^\d{1,15}$/;

/** A request body cut in two: the JSON header and the binary tensor data after it. */
export interface SplitBody {
  header: Buffer;
  binary: Buffer;
  /** Whether the request used the extension's header at all. */
  binaryExtension: boolean;
}

/** Splits a body by its Inference-Header-Content-Length (absent: all of it is JSON). */
export function splitInferBody(body: Buffer, headerLength: string | string[] | undefined): SplitBody {
  if (headerLength === undefined) return { header: body, binary: body.subarray(body.length), binaryExtension: false };
  const v = Array.isArray(headerLength) ? headerLength.join(', ') : headerLength.trim();
  if (!NON_NEGATIVE_INTEGER.test(v)) throw new OipError(`Inference-Header-Content-Length must be a non-negative integer, got ${JSON.stringify(v.slice(0, 40))}`);
  const n = Number(v);
  if (n > body.length) throw new OipError(`Inference-Header-Content-Length ${n} is more than the body's ${body.length} bytes`);
  return { header: body.subarray(0, n), binary: body.subarray(n), binaryExtension: true };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A tensor's `parameters`, checked to be an object when given. */
export function tensorParameters(t: unknown, where: string): Record<string, unknown> {
  const p = isObject(t) ? t.parameters : undefined;
  if (p === undefined) return {};
  if (!isObject(p)) throw new OipError(`${where}: "parameters" must be an object`);
  return p;
}

/**
 * One slice of `binary` per input, in order, for the inputs that declare
 * parameters.binary_data_size (undefined for a JSON input). The sizes must add up to exactly
 * the bytes after the header.
 */
export function sliceBinaryInputs(inputs: unknown[], split: SplitBody): Array<Buffer | undefined> {
  let at = 0;
  const out = inputs.map((raw, i) => {
    const where = `input ${i}${isObject(raw) && typeof raw.name === 'string' ? ` "${raw.name}"` : ''}`;
    const size = tensorParameters(raw, where).binary_data_size;
    if (size === undefined) return undefined;
    if (!Number.isSafeInteger(size) || (size as number) < 0) throw new OipError(`${where}: parameters.binary_data_size must be a non-negative integer, got ${JSON.stringify(size)}`);
    if (!split.binaryExtension) throw new OipError(`${where}: binary data needs the Inference-Header-Content-Length header to say where the JSON ends`);
    const end = at + (size as number);
    if (end > split.binary.length) {
      throw new OipError(`${where}: binary_data_size ${size} goes past the body: the inputs' sizes add up to at least ${end} bytes, ${split.binary.length} follow the JSON header`);
    }
    const slice = split.binary.subarray(at, end);
    at = end;
    return slice;
  });
  if (at !== split.binary.length) {
    throw new OipError(`${split.binary.length - at} bytes after the JSON header are not claimed by any input's binary_data_size (${at} are)`);
  }
  return out;
}

/**
 * For each output name answered, whether it goes back as binary: the output's own
 * parameters.binary_data, else the request's parameters.binary_data_output, else JSON.
 */
export function binaryOutputs(request: Record<string, unknown>, names: string[]): boolean[] {
  const all = tensorParameters(request, 'request').binary_data_output;
  if (all !== undefined && typeof all !== 'boolean') throw new OipError(`parameters.binary_data_output must be true or false, got ${JSON.stringify(all)}`);
  const own = new Map<string, boolean>();
  if (Array.isArray(request.outputs)) {
    for (const o of request.outputs) {
      const name = isObject(o) ? String(o.name) : '?';
      const b = tensorParameters(o, `output "${name}"`).binary_data;
      if (b === undefined) continue;
      if (typeof b !== 'boolean') throw new OipError(`output "${name}": parameters.binary_data must be true or false, got ${JSON.stringify(b)}`);
      own.set(name, b);
    }
  }
  return names.map((n) => own.get(n) ?? all ?? false);
}

/** The bytes of a typed array, without a copy. */
export const tensorBytes = (data: ArrayBufferView): Buffer => Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/** A whole body: JSON header then the binary parts, with the headers that describe it. */
export function encodeWithBinary(header: unknown, binaries: Uint8Array[]): { headers: Record<string, string>; body: Buffer } {
  const json = Buffer.from(JSON.stringify(header));
  if (binaries.length === 0) return { headers: { 'content-type': 'application/json', 'content-length': String(json.length) }, body: json };
  const body = Buffer.concat([json, ...binaries]);
  return {
    headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(json.length), 'content-length': String(body.length) },
    body,
  };
}

/**
 * A client's reading of an answer (tests and the benchmark): the JSON header, and each binary
 * output's bytes by name, cut by the outputs' parameters.binary_data_size in order.
 */
export function decodeInferReply(body: Buffer, headerLength: string | null | undefined): { header: any; binary: Map<string, Buffer> } {
  const split = splitInferBody(body, headerLength ?? undefined);
  const header = JSON.parse(split.header.toString('utf8')) as { outputs?: Array<{ name: string; parameters?: { binary_data_size?: number } }> };
  const binary = new Map<string, Buffer>();
  let at = 0;
  for (const o of header.outputs ?? []) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    binary.set(o.name, split.binary.subarray(at, at + size));
    at += size;
  }
  if (at !== split.binary.length) throw new Error(`reply: ${split.binary.length} binary bytes, outputs claim ${at}`);
  return { header, binary };
}
