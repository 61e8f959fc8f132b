import { Agent, EnvHttpProxyAgent, Pool, type Dispatcher } from 'undici';
import { tlsFor, type CredentialRule } from './credentials.js';

// The HTTP client downloads go through: direct, or through the proxy the environment names
// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, lower case first as curl reads them), so a board behind a
// site proxy needs only `Environment=HTTPS_PROXY=...` in a drop-in of the unit.

export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
}

const pick = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const v = env[name.toLowerCase()] ?? env[name];
  return v && v.trim() !== '' ? v.trim() : undefined;
};

export function proxyFromEnv(env: NodeJS.ProcessEnv): ProxySettings {
  return { httpProxy: pick(env, 'HTTP_PROXY'), httpsProxy: pick(env, 'HTTPS_PROXY'), noProxy: pick(env, 'NO_PROXY') };
}

/** A proxy URL as it may be shown: without its password. */
export function redactProxy(uri: string): string {
  return uri.replace(/\/\/([^/@:]*)(:[^/@]*)?@/, (_m, user: string) => `//${user ? `${user}:***` : '***'}@`);
}

export function downloadDispatcher(connectTimeoutMs: number, proxy: ProxySettings, credentials: readonly CredentialRule[] = []): Dispatcher {
  const options = { connect: { timeout: connectTimeoutMs }, headersTimeout: 0, bodyTimeout: 0 };
  if (!proxy.httpProxy && !proxy.httpsProxy) {
    // One pool per origin, each with that host's client certificate and CA (fetch.credentials).
    return new Agent({
      ...options,
      factory: (origin, opts: Pool.Options) => new Pool(origin, { ...opts, connect: { ...(opts.connect as object), ...tlsFor(new URL(String(origin)), credentials) } }),
    });
  }
  // Through a proxy, the tunnel's TLS takes no per-host options: client certificates and caFile
  // are not used (docs/operations.md says to put such a store in NO_PROXY).
  // Explicit values ('' for unset), so undici does not read process.env behind our back. With
  // only HTTP_PROXY set, undici sends https URLs through it too.
  return new EnvHttpProxyAgent({ ...options, httpProxy: proxy.httpProxy ?? '', httpsProxy: proxy.httpsProxy ?? '', noProxy: proxy.noProxy ?? '' });
}
