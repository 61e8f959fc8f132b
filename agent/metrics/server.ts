import { createServer, type Server } from 'node:http';
import { ModeldError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Registry } from 'prom-client';

// GET /metrics on the admin address (loopback by default: metrics name the node's models).

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: { registry: Registry; bind: string; port: number; log: Logger; text?: () => Promise<string> }): Promise<MetricsServer> {
  const { registry, log } = opts;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    (opts.text ? opts.text() : registry.metrics()).then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        log.warn({ err: err.message }, 'metrics collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new ModeldError('StartFailed', `metrics cannot listen on ${opts.bind}:${opts.port}: ${err.message}`, { cause: err })),
    );
    server.listen(opts.port, opts.bind, () => resolve());
  });
  server.on('error', (err) => log.error({ err: err.message }, 'metrics server error'));
  const port = (server.address() as { port: number }).port;
  log.info({ bind: opts.bind, port }, 'metrics listening on /metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
