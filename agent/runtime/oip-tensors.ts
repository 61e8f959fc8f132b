import { fromHalfBits, toHalfBits } from './half-float.js';

// Open Inference Protocol v2 JSON tensors <-> typed arrays, checked strictly. Pure: no
// onnxruntime import here, so the checks are testable with plain data.

/** OIP datatype -> onnxruntime tensor type. */
export const OIP_TO_ORT = {
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  BOOL: 'bool',
} as const;
export type OipDatatype = keyof typeof OIP_TO_ORT;
export type OrtType = (typeof OIP_TO_ORT)[OipDatatype];

const ORT_TO_OIP: Record<string, OipDatatype> = Object.fromEntries(Object.entries(OIP_TO_ORT).map(([k, v]) => [v, k as OipDatatype]));

export const oipDatatype = (ortType: string): string => ORT_TO_OIP[ortType] ?? ortType.toUpperCase();

export type TypedData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array;

export interface DecodedTensor {
  name: string;
  type: OrtType;
  shape: number[];
  data: TypedData;
}

/** An input's declared signature: shape entries are numbers (fixed) or -1/strings (any). */
export interface TensorSpec {
  name: string;
  type: string;
  shape: ReadonlyArray<number | string>;
}

export class OipError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const INT_RANGES: Record<string, [number, number]> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};

/** OIP allows nested row-major arrays as data; flatten them (bounded by `limit` elements). */
function flatten(data: unknown, limit: number, where: string): unknown[] {
  if (!Array.isArray(data)) throw new OipError(`${where}: "data" must be an array`);
  if (!data.some(Array.isArray)) return data;
  const out: unknown[] = [];
  const stack: unknown[][] = [data];
  const idx: number[] = [0];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const i = idx[idx.length - 1];
    if (i >= top.length) {
      stack.pop();
      idx.pop();
      continue;
    }
    idx[idx.length - 1] = i + 1;
    const v = top[i];
    if (Array.isArray(v)) {
      if (stack.length > 32) throw new OipError(`${where}: "data" is nested too deeply`);
      stack.push(v);
      idx.push(0);
    } else {
      out.push(v);
      if (out.length > limit) break;
    }
  }
  return out;
}

function typedArray(type: OrtType, values: unknown[], where: string): TypedData {
  const n = values.length;
  const bad = (i: number, what: string): never => {
    throw new OipError(`${where}: data[${i}] must be ${what}, got ${JSON.stringify(values[i])?.slice(0, 40)}`);
  };
  switch (type) {
    case 'float32':
    case 'float64': {
      const arr = type === 'float32' ? new Float32Array(n) : new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number') bad(i, 'a number');
        arr[i] = v as number;
      }
      return arr;
    }
    case 'int64':
    case 'uint64': {
      const arr = type === 'int64' ? new BigInt64Array(n) : new BigUint64Array(n);
      const [lo, hi] = type === 'int64' ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
      for (let i = 0; i < n; i++) {
        const v = values[i];
        let b: bigint | undefined;
        if (typeof v === 'number' && Number.isInteger(v)) b = BigInt(v);
        else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) b = BigInt(v);
        if (b === undefined || b < lo || b > hi) bad(i, `an integer in ${type} range`);
        arr[i] = b!;
      }
      return arr;
    }
    case 'float16': {
      // Held as the binary16 bits; onnxruntime takes a Uint16Array for a float16 tensor.
      const arr = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number') bad(i, 'a number');
        arr[i] = toHalfBits(v as number);
      }
      return arr;
    }
    case 'bool': {
      const arr = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v === 'boolean') arr[i] = v ? 1 : 0;
        else if (v === 0 || v === 1) arr[i] = v;
        else bad(i, 'a boolean');
      }
      return arr;
    }
    default: {
      const [lo, hi] = INT_RANGES[type];
      const Ctor = { int8: Int8Array, int16: Int16Array, int32: Int32Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array }[type];
      const arr = new Ctor(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(i, `an integer in ${type} range`);
        arr[i] = v as number;
      }
      return arr;
    }
  }
}

/** Bytes per element of each datatype, as the binary tensor data extension lays them out. */
export const ELEMENT_BYTES: Record<OipDatatype, number> = { FP16: 2, FP32: 4, FP64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, BOOL: 1 };

/**
 * Turns an input's `binary` bytes into typed data (little-endian, row-major; BOOL one byte,
 * 0 or 1), after `decodeInput` checked the shape. Aligned bytes are viewed in place, others copied.
 */
export function typedFromBytes(datatype: OipDatatype, bytes: Uint8Array, where: string): TypedData {
  const size = ELEMENT_BYTES[datatype];
  let buf = bytes;
  if (bytes.byteOffset % size !== 0) {
    buf = new Uint8Array(bytes.length);
    buf.set(bytes);
  }
  const n = buf.length / size;
  const ctor = { FP16: Uint16Array, FP32: Float32Array, FP64: Float64Array, INT8: Int8Array, INT16: Int16Array, INT32: Int32Array, INT64: BigInt64Array, UINT8: Uint8Array, UINT16: Uint16Array, UINT32: Uint32Array, UINT64: BigUint64Array, BOOL: Uint8Array }[datatype];
  const arr = new ctor(buf.buffer as ArrayBuffer, buf.byteOffset, n);
  if (datatype === 'BOOL') {
    const i = (arr as Uint8Array).findIndex((b) => b > 1);
    if (i >= 0) throw new OipError(`${where}: BOOL byte ${i} is ${arr[i]}; binary BOOL elements are one byte, 0 or 1`);
  }
  return arr;
}

/**
 * Checks one OIP request input against the model's declared input and turns it into typed
 * data, from its JSON "data" or, with the binary tensor data extension, from `binary` (the
 * bytes its parameters.binary_data_size took from the body). Throws OipError (400) naming the problem.
 */
export function decodeInput(raw: unknown, spec: TensorSpec, maxElements: number, binary?: Uint8Array): DecodedTensor {
  const where = `input "${spec.name}"`;
  if (typeof raw !== 'object' || raw === null) throw new OipError(`${where}: must be an object`);
  const t = raw as Record<string, unknown>;
  if (typeof t.datatype !== 'string' || !(t.datatype in OIP_TO_ORT)) {
    throw new OipError(`${where}: unsupported datatype ${JSON.stringify(t.datatype)}; expected ${oipDatatype(spec.type)}`);
  }
  const type = OIP_TO_ORT[t.datatype as OipDatatype];
  if (type !== spec.type) throw new OipError(`${where}: datatype ${t.datatype} does not match the model's ${oipDatatype(spec.type)}`);
  const shape = t.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new OipError(`${where}: "shape" must be an array of non-negative integers`);
  }
  if (spec.shape.length > 0 && shape.length !== spec.shape.length) {
    throw new OipError(`${where}: shape [${shape}] has ${shape.length} dimensions; the model expects ${spec.shape.length} ([${fmtShape(spec.shape)}])`);
  }
  spec.shape.forEach((d, i) => {
    if (typeof d === 'number' && d >= 0 && shape[i] !== d) {
      throw new OipError(`${where}: shape [${shape}] does not match the model's [${fmtShape(spec.shape)}]`);
    }
  });
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  if (count > maxElements) throw new OipError(`${where}: ${count} elements is more than the limit of ${maxElements}`);
  if (binary) {
    if (t.data !== undefined) throw new OipError(`${where}: has both "data" and parameters.binary_data_size; send its values one way`);
    const dt = t.datatype as OipDatatype;
    const want = count * ELEMENT_BYTES[dt];
    if (binary.length !== want) {
      throw new OipError(`${where}: binary_data_size ${binary.length} does not match shape [${shape}] x ${ELEMENT_BYTES[dt]} bytes (${dt}) = ${want}`);
    }
    return { name: spec.name, type, shape: shape as number[], data: typedFromBytes(dt, binary, where) };
  }
  const values = flatten(t.data, count, where);
  if (values.length !== count) throw new OipError(`${where}: shape [${shape}] needs ${count} values, "data" has ${values.length}`);
  return { name: spec.name, type, shape: shape as number[], data: typedArray(type, values, where) };
}

export const fmtShape = (shape: ReadonlyArray<number | string>) => shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)).join(', ');

/** OIP metadata shape: symbolic or unknown dimensions are -1. */
export const oipShape = (shape: ReadonlyArray<number | string>): number[] => shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));

/** Output tensor data as JSON values: int64 as numbers when safe, else strings; bool as booleans. */
export function encodeData(type: string, data: ArrayLike<unknown>): unknown[] {
  if (type === 'float16') {
    // onnxruntime hands float16 back as a Float16Array where the JS engine has one, else as the bits.
    if (data instanceof Uint16Array) return Array.from(data, fromHalfBits);
    return Array.from(data as ArrayLike<number>);
  }
  if (type === 'bool') return Array.from(data as ArrayLike<number>, (v) => v !== 0);
  if (type === 'int64' || type === 'uint64') {
    return Array.from(data as ArrayLike<bigint>, (v) => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()));
  }
  return Array.from(data);
}
