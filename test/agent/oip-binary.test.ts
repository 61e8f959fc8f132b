import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHalfBits, toHalfBits } from '../../agent/runtime/half-float.js';
import { binaryOutputs, decodeInferReply, encodeWithBinary, HEADER_LENGTH, sliceBinaryInputs, splitInferBody, tensorBytes } from '../../agent/runtime/oip-binary.js';
import { decodeInput, ELEMENT_BYTES, encodeData, OIP_TO_ORT, OipError, typedFromBytes, type OipDatatype, type TensorSpec } from '../../agent/runtime/oip-tensors.js';

// The binary tensor data extension's codec with plain data: what a client encodes, the server
// decodes to the same tensor, and what the server answers, a client reads back byte for byte.

const SEED = Number(process.env.FC_SEED ?? 20260510);
const PROPERTY = { seed: SEED, numRuns: 300 };
console.info(`oip-binary property tests: fast-check seed ${SEED} (FC_SEED=<n> to replay another)`);

const MAX = 1 << 20;

/** Values of each datatype as the typed array a client holds (BOOL as 0/1 bytes, FP16 as its bits). */
const valuesOf: Record<OipDatatype, fc.Arbitrary<ArrayBufferView>> = {
  FP16: fc.uint16Array({ maxLength: 40 }),
  FP32: fc.float32Array({ maxLength: 40 }),
  FP64: fc.float64Array({ maxLength: 40 }),
  INT8: fc.int8Array({ maxLength: 40 }),
  INT16: fc.int16Array({ maxLength: 40 }),
  INT32: fc.int32Array({ maxLength: 40 }),
  INT64: fc.bigInt64Array({ maxLength: 40 }),
  UINT8: fc.uint8Array({ maxLength: 40 }),
  UINT16: fc.uint16Array({ maxLength: 40 }),
  UINT32: fc.uint32Array({ maxLength: 40 }),
  UINT64: fc.bigUint64Array({ maxLength: 40 }),
  BOOL: fc.array(fc.boolean(), { maxLength: 40 }).map((bs) => Uint8Array.from(bs, (b) => (b ? 1 : 0))),
};
const DATATYPES = Object.keys(OIP_TO_ORT) as OipDatatype[];

/** A tensor: a datatype, values, and the rows it is split in (shape [rows, n/rows] or [n]). */
const tensorArb = fc
  .constantFrom(...DATATYPES)
  .chain((datatype) => valuesOf[datatype].map((data) => ({ datatype, data })))
  .map(({ datatype, data }) => {
    const n = data.byteLength / ELEMENT_BYTES[datatype];
    const rows = n > 0 && n % 2 === 0 ? 2 : 1;
    return { datatype, data, shape: [rows, n / rows] };
  });

const spec = (name: string, datatype: OipDatatype): TensorSpec => ({ name, type: OIP_TO_ORT[datatype], shape: ['N', -1] });
const bytesOf = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

/** The server's side of a request: split, slice, decode every input against its spec. */
function serverDecode(body: Buffer, headers: Record<string, string>, specs: TensorSpec[]) {
  const split = splitInferBody(body, headers[HEADER_LENGTH]);
  const req = JSON.parse(split.header.toString('utf8'));
  const parts = sliceBinaryInputs(req.inputs, split);
  return req.inputs.map((raw: unknown, i: number) => decodeInput(raw, specs[i], MAX, parts[i]));
}

describe('binary tensor data codec', () => {
  it('round-trips every supported datatype, binary and JSON inputs mixed in one body, in order', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(tensorArb, fc.boolean()), { minLength: 1, maxLength: 5 }), (generated) => {
        const tensors = generated.map(([t, asBinary]) => [asBinary ? t : { ...t, data: jsonable(t.datatype, t.data) }, asBinary] as const);
        const binaries: Buffer[] = [];
        const inputs = tensors.map(([t, asBinary], i) => {
          const head = { name: `in${i}`, datatype: t.datatype, shape: t.shape };
          if (!asBinary) return { ...head, data: jsonValues(t.datatype, t.data) };
          binaries.push(bytesOf(t.data));
          return { ...head, parameters: { binary_data_size: t.data.byteLength } };
        });
        const { headers, body } = encodeWithBinary({ inputs }, binaries);
        const decoded = serverDecode(body, headers, tensors.map(([t], i) => spec(`in${i}`, t.datatype)));
        tensors.forEach(([t], i) => {
          expect(decoded[i].shape).toEqual(t.shape);
          expect(decoded[i].type).toBe(OIP_TO_ORT[t.datatype]);
          expect(bytesOf(decoded[i].data)).toEqual(bytesOf(t.data));
        });
      }),
      PROPERTY,
    );
  });

  it('answers outputs as binary or JSON as asked, and a client reads the same bytes back', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(tensorArb, fc.option(fc.boolean(), { nil: undefined })), { minLength: 1, maxLength: 5 }), fc.option(fc.boolean(), { nil: undefined }), (tensors, all) => {
        const names = tensors.map((_, i) => `out${i}`);
        const request = {
          ...(all === undefined ? {} : { parameters: { binary_data_output: all } }),
          outputs: tensors.map(([, own], i) => ({ name: names[i], ...(own === undefined ? {} : { parameters: { binary_data: own } }) })),
        };
        const flags = binaryOutputs(request, names);
        const binaries: Buffer[] = [];
        const outputs = tensors.map(([t], i) => {
          const head = { name: names[i], datatype: t.datatype, shape: t.shape };
          if (!flags[i]) return { ...head, data: encodeData(OIP_TO_ORT[t.datatype], t.data as unknown as ArrayLike<unknown>) };
          binaries.push(tensorBytes(t.data));
          return { ...head, parameters: { binary_data_size: t.data.byteLength } };
        });
        const reply = encodeWithBinary({ outputs }, binaries);
        const read = decodeInferReply(reply.body, reply.headers[HEADER_LENGTH]);
        tensors.forEach(([t, own], i) => {
          expect(flags[i]).toBe(own ?? all ?? false);
          if (!flags[i]) return;
          const bytes = read.binary.get(names[i])!;
          expect(bytes).toEqual(bytesOf(t.data));
          expect(bytesOf(typedFromBytes(t.datatype, bytes, 'reply'))).toEqual(bytesOf(t.data));
        });
        expect(reply.headers['content-length']).toBe(String(reply.body.length));
        if (binaries.length === 0) expect(reply.headers[HEADER_LENGTH]).toBeUndefined();
      }),
      PROPERTY,
    );
  });

  it('decodes a binary tensor that starts at an odd offset in the body (copied to alignment)', () => {
    const v = Float64Array.of(1.5, -2, 1e300);
    const { headers, body } = encodeWithBinary({ inputs: [{ name: 'x', datatype: 'FP64', shape: [1, 3], parameters: { binary_data_size: 24 } }] }, [bytesOf(v)]);
    const padded = Buffer.concat([Buffer.from('x'), body]).subarray(1);
    const [t] = serverDecode(padded, headers, [spec('x', 'FP64')]);
    expect(Array.from(t.data as Float64Array)).toEqual([1.5, -2, 1e300]);
  });

  it('FP16: every binary16 value survives bits -> number -> bits; rounding matches Float16Array', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = fromHalfBits(h);
      if (Number.isNaN(v)) expect(toHalfBits(v) & 0x7c00).toBe(0x7c00);
      else expect(toHalfBits(v)).toBe(h);
    }
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (v) => {
        expect(toHalfBits(v)).toBe(new Uint16Array(Float16Array.of(v).buffer)[0]);
      }),
      { ...PROPERTY, numRuns: 5000 },
    );
  });
});

describe('binary tensor data: malformed bodies are refused with a reason', () => {
  const x = spec('x', 'FP32');
  const four = bytesOf(Float32Array.of(1, 2, 3, 4));
  const body = (header: unknown, tail: Buffer = four) => {
    const json = Buffer.from(JSON.stringify(header));
    return { json, all: Buffer.concat([json, tail]) };
  };
  const input = (over: Record<string, unknown> = {}) => ({ name: 'x', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 }, ...over });
  const refuse = (fn: () => unknown, msg: RegExp) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OipError);
    expect((err as OipError).status).toBe(400);
    expect((err as Error).message).toMatch(msg);
  };

  it.each([
    ['negative', '-5'],
    ['not an integer', '12.5'],
    ['not a number', 'abc'],
    ['empty', ''],
    ['hexadecimal', '0x10'],
    ['given twice', ['10', '10']],
  ])('header length %s', (_what, value) => {
    refuse(() => splitInferBody(Buffer.from('{}'), value as string), /Inference-Header-Content-Length must be a non-negative integer/);
  });

  it('header length over the body', () => {
    refuse(() => splitInferBody(Buffer.from('{}'), '3'), /Inference-Header-Content-Length 3 is more than the body's 2 bytes/);
  });

  it('binary_data_size without the header length', () => {
    const { all } = body({ inputs: [input()] }, Buffer.alloc(0));
    refuse(() => serverDecode(all, {}, [x]), /needs the Inference-Header-Content-Length header/);
  });

  it('sizes that claim more than the body holds', () => {
    const { json, all } = body({ inputs: [input({ parameters: { binary_data_size: 20 } })] });
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /goes past the body.*16 follow the JSON header/);
  });

  it('trailing bytes no input claims', () => {
    const { json, all } = body({ inputs: [input()] }, Buffer.concat([four, Buffer.from([9, 9])]));
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /2 bytes after the JSON header are not claimed/);
  });

  it('bytes after the header when no input is binary', () => {
    const { json, all } = body({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [1] }] }, Buffer.from([0]));
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /1 bytes after the JSON header are not claimed/);
  });

  it('a size that does not match shape x element size', () => {
    const { json, all } = body({ inputs: [input({ shape: [1, 2], parameters: { binary_data_size: 16 } })] });
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /binary_data_size 16 does not match shape \[1,2\] x 4 bytes \(FP32\) = 8/);
  });

  it('JSON data and binary for one input', () => {
    const { json, all } = body({ inputs: [input({ data: [1, 2, 3, 4] })] });
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /both "data" and parameters.binary_data_size/);
  });

  it.each([
    ['negative', -16],
    ['fractional', 15.5],
    ['a string', '16'],
  ])('binary_data_size %s', (_what, size) => {
    const { json, all } = body({ inputs: [input({ parameters: { binary_data_size: size } })] });
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /binary_data_size must be a non-negative integer/);
  });

  it('parameters that are not an object', () => {
    const { json, all } = body({ inputs: [input({ parameters: [16] })] });
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /"parameters" must be an object/);
  });

  it('a BOOL byte other than 0 or 1', () => {
    const { json, all } = body({ inputs: [{ name: 'b', datatype: 'BOOL', shape: [1, 3], parameters: { binary_data_size: 3 } }] }, Buffer.from([1, 2, 0]));
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [spec('b', 'BOOL')]), /BOOL byte 1 is 2/);
  });

  it('BYTES (strings) is not a supported datatype', () => {
    const { json, all } = body({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: 5 } }] }, Buffer.from([1, 0, 0, 0, 65]));
    refuse(() => serverDecode(all, { [HEADER_LENGTH]: String(json.length) }, [x]), /unsupported datatype "BYTES"/);
  });

  it.each([
    ['binary_data_output', { parameters: { binary_data_output: 'yes' } }, /binary_data_output must be true or false/],
    ['binary_data', { outputs: [{ name: 'y', parameters: { binary_data: 1 } }] }, /output "y": parameters.binary_data must be true or false/],
    ['request parameters', { parameters: 'all' }, /request: "parameters" must be an object/],
  ])('a non-boolean %s', (_what, request, msg) => {
    refuse(() => binaryOutputs(request as Record<string, unknown>, ['y']), msg);
  });
});

/** JSON values for a typed array, as a client would write them (FP16 as numbers, BOOL as booleans). */
function jsonValues(datatype: OipDatatype, data: ArrayBufferView): unknown[] {
  if (datatype === 'FP16') return Array.from(data as Uint16Array, fromHalfBits);
  return encodeData(OIP_TO_ORT[datatype], data as unknown as ArrayLike<unknown>);
}

/** JSON has no NaN, Infinity or -0 (null, refused; or 0): a JSON input holds 0 in their place. */
function jsonable(datatype: OipDatatype, data: ArrayBufferView): ArrayBufferView {
  if (datatype === 'FP16') return (data as Uint16Array).map((h) => ((h & 0x7c00) === 0x7c00 || h === 0x8000 ? 0 : h));
  if (datatype === 'FP32' || datatype === 'FP64') return (data as Float32Array).map((v) => (Number.isFinite(v) && !Object.is(v, -0) ? v : 0));
  return data;
}
