import { request as httpRequest, type Agent as HttpAgent } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

// Plain REST calls with the kubeconfig's TLS and credentials (client-node's applyToHTTPSOptions),
// for the verbs where the generated API is awkward (status subresource, merge patch, any CRD).

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export const isStatus = (err: unknown, status: number) => err instanceof KubeApiError && err.status === status;

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface KubeRest {
  request<T = any>(method: string, path: string, opts?: RequestOptions): Promise<T>;
}

export function kubeRest(kc: KubeConfig): KubeRest {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const base = cluster.server.replace(/\/+$/, '');
  return {
    async request(method, path, opts = {}) {
      const url = new URL(base + path);
      for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
      const o: any = { headers: {} };
      await kc.applyToHTTPSOptions(o);
      const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
      const headers: Record<string, string> = { ...o.headers, accept: 'application/json' };
      if (o.auth) headers.authorization = 'Basic ' + Buffer.from(o.auth).toString('base64');
      if (body) {
        headers['content-type'] = opts.contentType ?? 'application/json';
        headers['content-length'] = String(body.length);
      }
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      return new Promise((resolve, reject) => {
        const req = send(url, { method, headers, agent: o.agent as HttpAgent, signal: opts.signal, timeout: opts.timeoutMs ?? 30_000 }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            let json: any;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = undefined;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(json);
            reject(new KubeApiError(status, json?.reason ?? '', `${method} ${path}: ${status} ${json?.message ?? text.slice(0, 200)}`));
          });
        });
        req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
        req.on('error', reject);
        req.end(body);
      });
    },
  };
}
