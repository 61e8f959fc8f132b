import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

// /healthz (200 while the process works), /readyz (200 only on the leader with its loop running,
// so a Service routes the Router's status posts to the leader alone) and /metrics.

export async function startHealthServer(opts: { port: number; host?: string; registry: Registry; healthy(): { ok: boolean; detail: Record<string, unknown> }; ready(): boolean }): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      const h = opts.healthy();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h.detail) + '\n');
    } else if (path === '/readyz') {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503).end(ok ? 'ok\n' : 'not leading\n');
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': opts.registry.contentType }).end(await opts.registry.metrics());
    } else res.writeHead(404).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
