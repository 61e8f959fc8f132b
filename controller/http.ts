import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

// /healthz (200 while the process works), /readyz (200 only on the leader with its loop running,
// so a Service routes the Router's status posts to the leader alone), /metrics, and
// GET /status/<namespace>/<name>: every node's entry for one resource from the leader's memory
// (the resource itself lists only the nodes that need a person; docs/status.md).
// `?phase=<Phase>` keeps only the nodes in that phase.

export interface NodeDetail {
  targetNodes: number;
  nodes: Array<{ node: string; phase: string; reason?: string }>;
}

export async function startHealthServer(opts: {
  port: number;
  host?: string;
  registry: Registry;
  healthy(): { ok: boolean; detail: Record<string, unknown> };
  ready(): boolean;
  /** Undefined: no such resource (or not the leader, which has no reports). */
  nodeDetail?(key: string): NodeDetail | undefined;
}): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const status = path.match(/^\/status\/([^/]+)\/([^/]+)\/?$/);
    if (status && opts.nodeDetail) {
      const key = `${decodeURIComponent(status[1])}/${decodeURIComponent(status[2])}`;
      const d = opts.ready() ? opts.nodeDetail(key) : undefined;
      if (!d) return void res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: opts.ready() ? `no InferenceModel ${key}` : 'not the leader: ask the leading replica (its /readyz is 200)' }) + '\n');
      const phase = url.searchParams.get('phase');
      const nodes = phase ? d.nodes.filter((n) => n.phase === phase) : d.nodes;
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ model: key, targetNodes: d.targetNodes, count: nodes.length, nodes }) + '\n');
    }
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
