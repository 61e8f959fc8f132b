import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { Logger } from 'pino';
import { DeliveryError, type Inbound, type Transport } from './types.js';

// Through KubeEdge's cloudcore Router.
// Cloud -> node: POST http(s)://<cloudcore>:9443/<node>/<ruleNamespace>/<path>/<suffix>; with a
// Rule rest{path: /<topicPrefix>} -> eventbus{topic: <topicPrefix>} edgecore publishes the body,
// unchanged, on `<topicPrefix>/<suffix>` on that node's broker. We POST the topic itself as
// path+suffix, so the node sees exactly the topic the mqtt transport would use.
// Node -> cloud: a Rule eventbus{topic, node_name} -> rest{resource: <receiver URL>} per node;
// the Router POSTs the MQTT payload as-is (no node header), so the node is read from the payload.
// When cloudcore has no session for the node (edgecore offline), the Router answers 500 after
// three tries a second apart (cloud/pkg/router/listener/http.go wraps the rule handler in
// retry.Do; see test/fakes/kubeedge-router.ts for the versions read): that is DeliveryError
// with nodeUnreachable, and the controller backs off and shows the node as unreachable.

export interface KubeEdgeTransportOptions {
  routerUrl: string;
  ruleNamespace: string;
  receiverPort: number;
  receiverHost?: string;
  maxBytes?: number;
  connections?: number;
  timeoutMs?: number;
  log: Logger;
}

export function kubeedgeTransport(opts: KubeEdgeTransportOptions): Transport & { receiverPort(): number } {
  const base = opts.routerUrl.replace(/\/+$/, '');
  const dispatcher = new Agent({ connections: opts.connections ?? 64, headersTimeout: opts.timeoutMs ?? 30_000, bodyTimeout: opts.timeoutMs ?? 30_000 });
  const maxBytes = opts.maxBytes ?? 1024 * 1024;
  let server: Server | undefined;
  let lastOk = true;

  return {
    name: 'kubeedge',
    async start(onMessage: (m: Inbound) => void) {
      server = createServer((req, res) => {
        if (req.method !== 'POST') {
          res.writeHead(405, { allow: 'POST' }).end('POST only\n');
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        req.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            opts.log.warn({ size, maxBytes }, 'status post too large: dropped');
            res.writeHead(413).end('too large\n');
            req.destroy();
            return;
          }
          chunks.push(c);
        });
        req.on('end', () => {
          if (size > maxBytes) return;
          onMessage({ payload: Buffer.concat(chunks) });
          res.writeHead(200).end('ok\n');
        });
        req.on('error', () => {});
      });
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(opts.receiverPort, opts.receiverHost ?? '0.0.0.0', () => resolve());
      });
    },
    receiverPort: () => (server?.address() as AddressInfo | null)?.port ?? 0,
    async publish(node, topic, payload) {
      const url = `${base}/${encodeURIComponent(node)}/${encodeURIComponent(opts.ruleNamespace)}/${topic}`;
      try {
        const res = await request(url, { method: 'POST', body: payload, headers: { 'content-type': 'application/json' }, dispatcher });
        const text = await res.body.text();
        if (res.statusCode === 500) {
          // The Router itself works: it is the node that cloudcore cannot reach.
          lastOk = true;
          throw new DeliveryError(`router answered 500 (cloudcore has no session for node ${node}?): ${text.slice(0, 200)}`, true, 500);
        }
        if (res.statusCode < 200 || res.statusCode >= 300) throw new DeliveryError(`router answered ${res.statusCode}: ${text.slice(0, 200)}`, false, res.statusCode);
        lastOk = true;
      } catch (err) {
        if (err instanceof DeliveryError && err.nodeUnreachable) throw err;
        lastOk = false;
        throw err instanceof DeliveryError ? err : new DeliveryError(`router not reachable: ${(err as Error).message}`, false);
      }
    },
    connected: () => lastOk,
    async stop() {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server?.closeAllConnections();
      await dispatcher.close();
    },
  };
}
