// The serving benchmark's baseline (issue 10): the least a Node process can do to answer OIP
// infer requests with onnxruntime — a bare node:http server that reads the body and calls the
// same session code as the runtime host (OipModel.infer from oip-model.ts, same threads, same
// body limit), no routing, no metrics. Its own process, so the load generator does not share
// its event loop. The node endpoint is compared with it: only the host's routing differs.
//   argv: <modelDir>          stdout: {"port": <n>}, then it serves until stdin closes
import { createServer } from 'node:http';
import { ConfigSchema } from '../../agent/config/schema.js';
import { jsonReply, loadOipModel } from '../../agent/runtime/oip-model.js';
import { OipError } from '../../agent/runtime/oip-tensors.js';
import { readBody } from '../../agent/runtime/read-body.js';

const defaults = ConfigSchema.parse({});
const limit = defaults.gateway.maxBodyBytes;
const model = await loadOipModel({ modelDir: process.argv[2], modelName: process.argv[3] ?? 'lin', version: '1', threads: defaults.serving.sessionThreads, maxBodyBytes: limit, backend: defaults.serving.onnxBackend });
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  readBody(req, limit)
    .then((body) => model.infer(body, req.headers))
    .then(
      (r) => {
        res.writeHead(r.status, r.headers);
        res.end(r.body);
      },
      (err: unknown) => {
        const r = jsonReply(err instanceof OipError ? err.status : 500, { error: (err as Error).message });
        res.writeHead(r.status, r.headers);
        res.end(r.body);
      },
    );
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
