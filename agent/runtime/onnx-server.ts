import { readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MODEL_NAME_PATTERN, VERSION_PATTERN } from '../../shared/names.js';
import { EXIT_UNSERVABLE } from './exit-codes.js';
import { decodeInput, encodeData, OipError, oipDatatype, oipShape, type TensorSpec } from './oip-tensors.js';

// The built-in `onnx` runtime: one process per instance, started by the supervisor. It loads the
// one .onnx file of a version directory with onnxruntime-node (CPU) and speaks the Open Inference
// Protocol v2 over HTTP on loopback. Exit code 78 (EX_CONFIG) means "this model cannot be
// served" (no model file, invalid model): the supervisor does not restart it.

export { EXIT_UNSERVABLE };

interface Args {
  port: number;
  host: string;
  modelDir: string;
  modelName: string;
  version: string;
  maxBodyBytes: number;
  threads: number;
}

function parse(argv: string[]): Args {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'model-dir': { type: 'string' },
      'model-name': { type: 'string' },
      version: { type: 'string' },
      'max-body-bytes': { type: 'string', default: String(64 * 1024 * 1024) },
      threads: { type: 'string', default: '1' },
    },
    strict: true,
  });
  const port = Number(values.port);
  const args: Args = {
    port,
    host: values.host!,
    modelDir: values['model-dir'] ?? '',
    modelName: values['model-name'] ?? '',
    version: values.version ?? '',
    maxBodyBytes: Number(values['max-body-bytes']),
    threads: Number(values.threads),
  };
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--port must be 1-65535');
  if (!args.modelDir) throw new Error('--model-dir is required');
  if (!MODEL_NAME_PATTERN.test(args.modelName)) throw new Error('--model-name is missing or invalid');
  if (!VERSION_PATTERN.test(args.version)) throw new Error('--version is missing or invalid');
  if (!Number.isInteger(args.maxBodyBytes) || args.maxBodyBytes < 1) throw new Error('--max-body-bytes must be a positive integer');
  if (!Number.isInteger(args.threads) || args.threads < 1) throw new Error('--threads must be a positive integer');
  return args;
}

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

type Ort = typeof import('onnxruntime-node');
type Session = import('onnxruntime-node').InferenceSession;

interface Loaded {
  ort: Ort;
  session: Session;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

const tensorSpecs = (meta: Session['inputMetadata']): TensorSpec[] =>
  meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'unknown', shape: [] }));

async function load(args: Args): Promise<Loaded> {
  const file = findModelFile(args.modelDir);
  // onnxruntime's telemetry (on unless told otherwise) leaves .ses and mat-debug-<pid>.log in
  // the temp folder of every process that loads it, and a node has no use for it.
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(file, {
    executionProviders: ['cpu'],
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  return { ort, session, inputs: tensorSpecs(session.inputMetadata), outputs: tensorSpecs(session.outputMetadata) };
}

function send(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const sendError = (res: ServerResponse, status: number, message: string) => send(res, status, { error: message });

/** Reads a request body up to `limit` bytes; rejects with OipError 413 past it. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new OipError(`request body of ${declared} bytes is over the limit of ${limit}`, 413));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new OipError(`request body is over the limit of ${limit} bytes`, 413));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function startServer(args: Args, stderr: (line: string) => void) {
  let model: Loaded | undefined;
  let inFlight = 0;

  const metadata = (m: Loaded) => ({
    name: args.modelName,
    versions: [args.version],
    platform: 'onnxruntime',
    inputs: m.inputs.map((t) => ({ name: t.name, datatype: oipDatatype(t.type), shape: oipShape(t.shape) })),
    outputs: m.outputs.map((t) => ({ name: t.name, datatype: oipDatatype(t.type), shape: oipShape(t.shape) })),
  });

  async function infer(req: IncomingMessage, res: ServerResponse, m: Loaded) {
    const body = await readBody(req, args.maxBodyBytes);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new OipError(`request body is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new OipError('request body must be a JSON object');
    const r = parsed as { id?: unknown; inputs?: unknown; outputs?: unknown };
    if (!Array.isArray(r.inputs) || r.inputs.length === 0) throw new OipError('"inputs" must be a non-empty array');
    const maxElements = Math.max(1, Math.floor(args.maxBodyBytes / 2));
    const feeds: Record<string, import('onnxruntime-node').Tensor> = {};
    for (const raw of r.inputs) {
      const name = (raw as { name?: unknown })?.name;
      if (typeof name !== 'string') throw new OipError('every input needs a "name"');
      const spec = m.inputs.find((i) => i.name === name);
      if (!spec) throw new OipError(`unknown input "${name}"; the model's inputs are ${m.inputs.map((i) => `"${i.name}"`).join(', ')}`);
      if (feeds[name]) throw new OipError(`input "${name}" is given twice`);
      const t = decodeInput(raw, spec, maxElements);
      feeds[name] = new m.ort.Tensor(t.type, t.data, t.shape);
    }
    const missing = m.inputs.filter((i) => !feeds[i.name]);
    if (missing.length) throw new OipError(`missing input ${missing.map((i) => `"${i.name}"`).join(', ')}`);
    let wanted = m.outputs.map((o) => o.name);
    if (r.outputs !== undefined) {
      if (!Array.isArray(r.outputs)) throw new OipError('"outputs" must be an array');
      wanted = r.outputs.map((o) => {
        const name = (o as { name?: unknown })?.name;
        if (typeof name !== 'string' || !m.outputs.some((x) => x.name === name)) throw new OipError(`unknown output ${JSON.stringify(name)}`);
        return name;
      });
    }
    let result: Record<string, import('onnxruntime-node').Tensor>;
    try {
      result = await m.session.run(feeds, wanted);
    } catch (err) {
      // onnxruntime rejects inputs the declared signature let through (e.g. broadcast mismatch).
      throw new OipError(`inference failed: ${(err as Error).message}`);
    }
    send(res, 200, {
      model_name: args.modelName,
      model_version: args.version,
      ...(typeof r.id === 'string' ? { id: r.id } : {}),
      outputs: wanted.map((name) => {
        const t = result[name];
        return { name, datatype: oipDatatype(t.type), shape: Array.from(t.dims), data: encodeData(t.type, t.data as ArrayLike<unknown>) };
      }),
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = req.url ?? '/';
    const path = url.split('?')[0];
    if (path === '/v2/health/live') return send(res, 200, { live: true });
    if (path === '/v2/health/ready') return model ? send(res, 200, { ready: true }) : sendError(res, 503, 'model is loading');
    if (path === '/v2') return send(res, 200, { name: 'modeld-onnx', version: '1', extensions: [] });
    const m = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?$/.exec(path);
    if (!m) return sendError(res, 404, `no route for ${req.method} ${path}`);
    let name: string;
    try {
      name = decodeURIComponent(m[1]);
    } catch {
      return sendError(res, 400, 'bad model name in path');
    }
    if (name !== args.modelName) return sendError(res, 404, `unknown model "${name}"`);
    if (m[2] !== undefined && m[2] !== args.version) return sendError(res, 404, `model "${name}" has no version "${m[2]}"`);
    if (!model) return sendError(res, 503, `model "${name}" is loading`);
    const action = m[3];
    if (action === '/infer') {
      if (req.method !== 'POST') return sendError(res, 405, 'infer takes POST');
      return infer(req, res, model);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, `${req.method} not allowed here`);
    if (action === '/ready') return send(res, 200, { name, ready: true });
    return send(res, 200, metadata(model));
  }

  const server = createServer((req, res) => {
    inFlight++;
    res.on('close', () => inFlight--);
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof OipError ? err.status : 500;
      if (status === 500) stderr(`request failed: ${(err as Error)?.stack ?? err}`);
      if (res.headersSent) res.destroy();
      else {
        if (status === 413) res.setHeader('connection', 'close');
        sendError(res, status, (err as Error)?.message ?? String(err));
      }
    });
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 120_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  return {
    server,
    listen: () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(args.port, args.host, () => resolve());
      }),
    setModel: (m: Loaded) => {
      model = m;
    },
    inFlight: () => inFlight,
  };
}

async function main() {
  const stderr = (line: string) => process.stderr.write(`${line}\n`);
  let args: Args;
  try {
    args = parse(process.argv.slice(2));
  } catch (err) {
    stderr(`onnx-server: ${(err as Error).message}`);
    process.exit(EXIT_UNSERVABLE);
  }
  const srv = startServer(args, stderr);
  // Live before the model is loaded; ready only after.
  await srv.listen();
  let loaded: Loaded;
  try {
    loaded = await load(args);
  } catch (err) {
    stderr(`onnx-server: cannot load model "${args.modelName}" version "${args.version}": ${(err as Error).message}`);
    process.exit(EXIT_UNSERVABLE);
  }
  srv.setModel(loaded);
  process.stdout.write(
    `onnx-server: serving "${args.modelName}" version "${args.version}" on ${args.host}:${args.port} ` +
      `inputs ${loaded.inputs.map((i) => `${i.name}:${oipDatatype(i.type)}[${oipShape(i.shape)}]`).join(' ')}\n`,
  );

  // SIGTERM: stop accepting, let requests in flight finish, exit. The supervisor SIGKILLs on overrun.
  const stop = () => {
    srv.server.close();
    srv.server.closeIdleConnections();
    const timer = setInterval(() => {
      if (srv.inFlight() === 0) process.exit(0);
    }, 20);
    timer.unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// Run only as a program, not when imported (tests import findModelFile/startServer).
const self = new URL(import.meta.url).pathname;
if (process.argv[1] && (process.argv[1] === self || process.argv[1].replace(/\.[jt]s$/, '') === self.replace(/\.[jt]s$/, ''))) {
  main().catch((err) => {
    process.stderr.write(`onnx-server: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  });
}
