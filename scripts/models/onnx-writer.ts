import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

// Real ONNX models, written without any download or Python: the ONNX protobuf (onnx.proto3)
// is small enough to encode by hand. Field numbers below are onnx.proto's.

/** ONNX TensorProto.DataType values for the element types we write. */
export const OnnxDataType = { FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13 } as const;
export type OnnxElemType = keyof typeof OnnxDataType;

// ---- protobuf wire encoding -------------------------------------------------------------

type Bytes = Uint8Array;

function varint(n: number | bigint): Bytes {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

const concat = (parts: Bytes[]): Bytes => Buffer.concat(parts);
const key = (field: number, wire: 0 | 2) => varint((field << 3) | wire);
const fInt = (field: number, n: number | bigint): Bytes => concat([key(field, 0), varint(n)]);
const fBytes = (field: number, b: Bytes): Bytes => concat([key(field, 2), varint(b.length), b]);
const fStr = (field: number, s: string): Bytes => fBytes(field, Buffer.from(s, 'utf8'));
const fMsg = (field: number, parts: Bytes[]): Bytes => fBytes(field, concat(parts));

// ---- ONNX messages ----------------------------------------------------------------------

/** TensorProto with raw_data (little-endian), used for initializers. */
function tensorProto(name: string, elem: OnnxElemType, dims: number[], values: number[]): Bytes {
  let raw: Buffer;
  switch (elem) {
    case 'FLOAT':
      raw = Buffer.from(Float32Array.from(values).buffer);
      break;
    case 'DOUBLE':
      raw = Buffer.from(Float64Array.from(values).buffer);
      break;
    case 'INT32':
      raw = Buffer.from(Int32Array.from(values).buffer);
      break;
    case 'INT64':
      raw = Buffer.from(BigInt64Array.from(values.map((v) => BigInt(Math.trunc(v)))).buffer);
      break;
    case 'BOOL':
      raw = Buffer.from(Uint8Array.from(values.map((v) => (v ? 1 : 0))));
      break;
    default:
      throw new RangeError(`no initializer encoding for ${elem}`);
  }
  return concat([...dims.map((d) => fInt(1, d)), fInt(2, OnnxDataType[elem]), fStr(8, name), fBytes(9, raw)]);
}

/** ValueInfoProto for a tensor; a string dim is symbolic (dim_param), a number is fixed. */
function valueInfo(name: string, elem: OnnxElemType, shape: Array<number | string>): Bytes {
  const dims = shape.map((d) => fMsg(1, [typeof d === 'number' ? fInt(1, d) : fStr(2, d)]));
  const tensorType = [fInt(1, OnnxDataType[elem]), fMsg(2, dims)];
  return concat([fStr(1, name), fMsg(2, [fMsg(1, tensorType)])]);
}

/** AttributeProto: an INT (type 2) or INTS (type 7) attribute. */
function intAttribute(name: string, value: number | number[]): Bytes {
  return Array.isArray(value) ? concat([fStr(1, name), ...value.map((v) => fInt(8, v)), fInt(20, 7)]) : concat([fStr(1, name), fInt(3, value), fInt(20, 2)]);
}

function nodeProto(op: string, inputs: string[], outputs: string[], name: string, attributes: Bytes[] = []): Bytes {
  return concat([...inputs.map((i) => fStr(1, i)), ...outputs.map((o) => fStr(2, o)), fStr(3, name), fStr(4, op), ...attributes.map((a) => fBytes(5, a))]);
}

/** AttributeProto holding a graph (type GRAPH = 5): a Loop's body. */
const graphAttribute = (name: string, graph: Bytes): Bytes => concat([fStr(1, name), fBytes(6, graph), fInt(20, 5)]);

interface GraphSpec {
  name: string;
  nodes: Bytes[];
  initializers: Bytes[];
  inputs: Bytes[];
  outputs: Bytes[];
}

function graphProto(g: GraphSpec): Bytes {
  return concat([
    ...g.nodes.map((n) => fBytes(1, n)),
    fStr(2, g.name),
    ...g.initializers.map((t) => fBytes(5, t)),
    ...g.inputs.map((v) => fBytes(11, v)),
    ...g.outputs.map((v) => fBytes(12, v)),
  ]);
}

/** ModelProto: ir_version 8, default-domain opset 13. */
function modelProto(g: GraphSpec, docString: string): Bytes {
  const graph = graphProto(g);
  return concat([
    fInt(1, 8),
    fStr(2, 'modeld-make-models'),
    fStr(3, '1'),
    fInt(5, 1),
    fStr(6, docString),
    fBytes(7, graph),
    fMsg(8, [fStr(1, ''), fInt(2, 13)]),
  ]);
}

function writeFile(path: string, bytes: Bytes) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
}

// ---- public -----------------------------------------------------------------------------

export interface LinearModelOptions {
  w: number;
  b: number;
  /** Input tensor name (default "x"); the output is always "y". */
  inputName?: string;
  /** Features per row (default 1): x is [N, dims] with a symbolic batch dimension N. */
  dims?: number;
  /** Element type of x, w, b and y (default FLOAT). BOOL is not valid for Mul/Add. */
  dataType?: Exclude<OnnxElemType, 'BOOL'>;
}

/** The bytes of a model computing y = x * w + b (Mul then Add; w and b are initializers). */
export function linearModelBytes(opts: LinearModelOptions): Bytes {
  const input = opts.inputName ?? 'x';
  const dims = opts.dims ?? 1;
  const elem = opts.dataType ?? 'FLOAT';
  if (!Number.isInteger(dims) || dims < 1) throw new RangeError('dims must be a positive integer');
  return modelProto(
    {
      name: 'linear',
      nodes: [nodeProto('Mul', [input, 'w'], ['xw'], 'mul'), nodeProto('Add', ['xw', 'b'], ['y'], 'add')],
      initializers: [tensorProto('w', elem, [dims], Array(dims).fill(opts.w)), tensorProto('b', elem, [dims], Array(dims).fill(opts.b))],
      inputs: [valueInfo(input, elem, ['N', dims])],
      outputs: [valueInfo('y', elem, ['N', dims])],
    },
    `y = x * ${opts.w} + ${opts.b}`,
  );
}

/** Writes a real ONNX model computing y = x * w + b to `path` (parent directories created). */
export function writeLinearModel(path: string, opts: LinearModelOptions): void {
  writeFile(path, linearModelBytes(opts));
}

/** The bytes of a model computing y = Identity(x) of any element type (BOOL included), x [N, dims]. */
export function identityModelBytes(opts: { dataType: OnnxElemType; inputName?: string; dims?: number }): Bytes {
  const input = opts.inputName ?? 'x';
  const dims = opts.dims ?? 1;
  return modelProto(
    {
      name: 'identity',
      nodes: [nodeProto('Identity', [input], ['y'], 'id')],
      initializers: [],
      inputs: [valueInfo(input, opts.dataType, ['N', dims])],
      outputs: [valueInfo('y', opts.dataType, ['N', dims])],
    },
    'y = x',
  );
}

/** Writes a model computing y = Identity(x) of any element type (for datatype tests, BOOL included). */
export function writeIdentityModel(path: string, opts: { dataType: OnnxElemType; inputName?: string; dims?: number }): void {
  writeFile(path, identityModelBytes(opts));
}

/**
 * Writes an image-sized model: y = ReduceMean(x) over the last two axes, x float32
 * [N, channels, height, width] -> y [N, channels] (a classifier's input with next to no compute).
 */
export function writeChannelMeanModel(path: string, opts: { channels: number; height: number; width: number }): void {
  writeFile(
    path,
    modelProto(
      {
        name: 'channel-mean',
        nodes: [nodeProto('ReduceMean', ['x'], ['y'], 'mean', [intAttribute('axes', [2, 3]), intAttribute('keepdims', 0)])],
        initializers: [],
        inputs: [valueInfo('x', 'FLOAT', ['N', opts.channels, opts.height, opts.width])],
        outputs: [valueInfo('y', 'FLOAT', ['N', opts.channels])],
      },
      'y = mean of x over height and width',
    ),
  );
}

/**
 * Writes a model counting to its input: y (FP32, a scalar) = n (INT64, a scalar), by a Loop of n
 * iterations adding 1. Its run time grows with n and onnxruntime cannot cancel it: n = 1e12 is
 * a run that hangs for days, the hung session of the health tests.
 */
export function writeCountModel(path: string): void {
  const body = graphProto({
    name: 'count-body',
    nodes: [nodeProto('Identity', ['c_in'], ['c_out'], 'keep-going'), nodeProto('Add', ['v_in', 'one'], ['v_out'], 'add-one')],
    initializers: [],
    inputs: [valueInfo('i', 'INT64', []), valueInfo('c_in', 'BOOL', []), valueInfo('v_in', 'FLOAT', [])],
    outputs: [valueInfo('c_out', 'BOOL', []), valueInfo('v_out', 'FLOAT', [])],
  });
  writeFile(
    path,
    modelProto(
      {
        name: 'count',
        nodes: [nodeProto('Loop', ['n', 'cond', 'v0'], ['y'], 'loop', [graphAttribute('body', body)])],
        initializers: [tensorProto('cond', 'BOOL', [], [1]), tensorProto('v0', 'FLOAT', [], [0]), tensorProto('one', 'FLOAT', [], [1])],
        inputs: [valueInfo('n', 'INT64', [])],
        outputs: [valueInfo('y', 'FLOAT', [])],
      },
      'y = n (a loop of n iterations)',
    ),
  );
}

/** Writes a file named like a model that is not one: onnxruntime refuses to load it. */
export function writeBrokenModel(path: string): void {
  // A truncated protobuf: a graph field announcing more bytes than follow.
  writeFile(path, concat([fInt(1, 8), key(7, 2), varint(1000), Buffer.from('not an onnx model')]));
}
