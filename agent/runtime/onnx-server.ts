import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { MODEL_NAME_PATTERN, VERSION_PATTERN } from '../../shared/names.js';
import { EXIT_UNSERVABLE } from './exit-codes.js';
import { findModelFile, isServerMetadataPath, jsonReply, loadOipModel, serverMetadata, type OipModel, type OipReply } from './oip-model.js';
import { OipError, oipDatatype, oipShape } from './oip-tensors.js';
import { ONNX_BACKEND_CHOICES, type OnnxBackendChoice } from './ort-backend.js';
import { readBody } from './read-body.js';

// The built-in `onnx` runtime: one process per instance, started by the supervisor. It loads the
// one .onnx file of a version directory with onnxruntime-node (CPU) and speaks the Open Inference
// Protocol v2 over HTTP on loopback. Exit code 78 (EX_CONFIG) means "this model cannot be
// served" (no model file, invalid model): the supervisor does not restart it.

export { EXIT_UNSERVABLE, findModelFile };

interface Args {
  port: number;
  host: string;
  modelDir: string;
  modelName: string;
  version: string;
  maxBodyBytes: number;
  threads: number;
  backend: OnnxBackendChoice;
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
      backend: { type: 'string', default: 'auto' },
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
    backend: values.backend as OnnxBackendChoice,
  };
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--port must be 1-65535');
  if (!args.modelDir) throw new Error('--model-dir is required');
  if (!MODEL_NAME_PATTERN.test(args.modelName)) throw new Error('--model-name is missing or invalid');
  if (!VERSION_PATTERN.test(args.version)) throw new Error('--version is missing or invalid');
  if (!Number.isInteger(args.maxBodyBytes) || args.maxBodyBytes < 1) throw new Error('--max-body-bytes must be a positive integer');
  if (!Number.isInteger(args.threads) || args.threads < 1) throw new Error('--threads must be a positive integer');
  if (!ONNX_BACKEND_CHOICES.includes(args.backend)) throw new Error(`--backend must be one of ${ONNX_BACKEND_CHOICES.join(', ')}`);
  return args;
}

function send(res: ServerResponse, status: number, body: unknown) {
  writeReply(res, jsonReply(status, body));
}

function writeReply(res: ServerResponse, r: OipReply) {
  res.writeHead(r.status, r.headers);
  res.end(r.body);
}

const sendError = (res: ServerResponse, status: number, message: string) => send(res, status, { error: message });

export function startServer(args: Args, stderr: (line: string) => void) {
  let model: OipModel | undefined;
  let inFlight = 0;

  async function infer(req: IncomingMessage, res: ServerResponse, m: OipModel) {
    const body = await readBody(req, args.maxBodyBytes);
    writeReply(res, await m.infer(body, req.headers));
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = req.url ?? '/';
    const path = url.split('?')[0];
    if (path === '/v2/health/live') return send(res, 200, { live: true });
    if (path === '/v2/health/ready') return model ? send(res, 200, { ready: true }) : sendError(res, 503, 'model is loading');
    if (isServerMetadataPath(path)) return send(res, 200, serverMetadata());
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
    return send(res, 200, model.metadata());
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
    setModel: (m: OipModel) => {
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
  let loaded: OipModel;
  try {
    loaded = await loadOipModel(args);
  } catch (err) {
    stderr(`onnx-server: cannot load model "${args.modelName}" version "${args.version}": ${(err as Error).message}`);
    process.exit(EXIT_UNSERVABLE);
  }
  srv.setModel(loaded);
  process.stdout.write(
    `onnx-server: serving "${args.modelName}" version "${args.version}" on ${args.host}:${args.port} (onnxruntime ${loaded.backend}) ` +
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
