import { createRequire } from 'node:module';
import { dirname } from 'node:path';

// Which onnxruntime serves the built-in runtime. onnxruntime-node is native code and ships no
// binary for some architectures (32-bit ARM); there onnxruntime-web's WASM build runs the same
// models in Node, slower but everywhere V8 runs. `auto` prefers native and falls back.

export const ONNX_BACKEND_CHOICES = ['auto', 'native', 'wasm'] as const;
export type OnnxBackendChoice = (typeof ONNX_BACKEND_CHOICES)[number];
export type OnnxBackend = 'native' | 'wasm';

/** The API both packages share (onnxruntime-common's), typed through onnxruntime-node. */
export type OrtApi = typeof import('onnxruntime-node');

export interface LoadedOrt {
  backend: OnnxBackend;
  ort: OrtApi;
  executionProviders: string[];
  /** With `auto` on the WASM backend: why onnxruntime-node did not load. */
  nativeError?: string;
}

export interface OrtImporters {
  native(): Promise<OrtApi>;
  wasm(): Promise<OrtApi>;
}

/** The directory holding onnxruntime-web's .mjs glue and .wasm binary (its dist/). */
export function wasmDistDir(): string {
  // Through the .wasm's own export: the package's main entry for require is a file the release
  // does not ship (only the ESM entry Node imports).
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
}

export const realImporters: OrtImporters = {
  native: async () => {
    // onnxruntime's telemetry (on unless told otherwise) leaves .ses and mat-debug-<pid>.log in
    // the temp folder of every process that loads it, and a node has no use for it.
    process.env.ORT_DISABLE_TELEMETRY ??= '1';
    return (await import('onnxruntime-node')) as OrtApi;
  },
  wasm: async () => {
    const ort = (await import('onnxruntime-web')) as unknown as OrtApi & { env: { wasm: Record<string, unknown> } };
    // Local files only (never a CDN), one thread (no worker threads), no proxy worker.
    ort.env.wasm.wasmPaths = `${wasmDistDir()}/`;
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    return ort;
  },
};

const firstLine = (err: unknown) => String((err as Error)?.message ?? err).split('\n')[0].slice(0, 200);

/** Loads the backend `choice` asks for; rejects with the reason when it cannot load. */
export async function loadOrtBackend(choice: OnnxBackendChoice, importers: OrtImporters = realImporters): Promise<LoadedOrt> {
  const wasm = async (nativeError?: string): Promise<LoadedOrt> => ({ backend: 'wasm', ort: await importers.wasm(), executionProviders: ['wasm'], ...(nativeError ? { nativeError } : {}) });
  if (choice === 'wasm') return wasm();
  if (choice === 'native') return { backend: 'native', ort: await importers.native(), executionProviders: ['cpu'] };
  let native: OrtApi;
  try {
    native = await importers.native();
  } catch (err) {
    return wasm(firstLine(err));
  }
  return { backend: 'native', ort: native, executionProviders: ['cpu'] };
}

const cache = new Map<OnnxBackendChoice, Promise<LoadedOrt>>();

/** loadOrtBackend with the real packages, once per choice per process (each module loads once anyway). */
export function ortBackend(choice: OnnxBackendChoice): Promise<LoadedOrt> {
  let p = cache.get(choice);
  if (!p) {
    p = loadOrtBackend(choice);
    cache.set(choice, p);
    p.catch(() => cache.delete(choice));
  }
  return p;
}

/**
 * A model computing y = Identity(x), x float32 [N, 1]: what `probeOrtBackend` runs. Written by
 * scripts/models/onnx-writer.ts (identityModelBytes({dataType: 'FLOAT', dims: 1})); a test checks
 * they are the same bytes.
 */
export const PROBE_MODEL_BASE64 =
  'CAgSEm1vZGVsZC1tYWtlLW1vZGVscxoBMSgBMgV5ID0geDpMChQKAXgSAXkaAmlkIghJZGVudGl0eRIIaWRlbnRpdHlaFAoBeBIPCg0IARIJCgMSAU4KAggBYhQKAXkSDwoNCAESCQoDEgFOCgIIAUIECgAQDQ==';

export interface BackendProbe {
  backend: OnnxBackend;
  /** onnxruntime's version, as the package reports it. */
  version: string;
  nativeError?: string;
}

/** Loads the backend, creates a session from a tiny model and runs it: what `doctor` reports. */
export async function probeOrtBackend(choice: OnnxBackendChoice, load: (c: OnnxBackendChoice) => Promise<LoadedOrt> = ortBackend): Promise<BackendProbe> {
  const { ort, backend, executionProviders, nativeError } = await load(choice);
  const session = await ort.InferenceSession.create(Buffer.from(PROBE_MODEL_BASE64, 'base64'), { executionProviders, intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1.5), [1, 1]) });
    const y = out.y?.data as Float32Array | undefined;
    if (!y || y[0] !== 1.5) throw new Error(`the probe model answered ${y?.[0]} for 1.5`);
  } finally {
    await session.release();
  }
  const versions = (ort.env as { versions?: Record<string, string | undefined> }).versions ?? {};
  return { backend, version: versions[backend === 'wasm' ? 'web' : 'node'] ?? versions.common ?? '?', ...(nativeError ? { nativeError } : {}) };
}
