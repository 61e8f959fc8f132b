import type { Config } from '../config/schema.js';
import { parseCredentials, type CredentialRule } from './credentials.js';
import { proxyFromEnv, type ProxySettings } from './dispatcher.js';
import { parseMirrors, type Mirror } from './mirrors.js';

/** Everything a download needs to know from the node's configuration, in one plain object. */
export interface FetchPolicy {
  attempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  connectTimeoutMs: number;
  /** No bytes (or no response headers) for this long aborts the attempt as Stalled. */
  stallTimeoutMs: number;
  /** An average below this many bytes per second over lowSpeedWindowMs aborts the attempt as Stalled; 0: off. */
  lowSpeedBytesPerSec: number;
  lowSpeedWindowMs: number;
  /** Bytes per second; 0 means no cap. */
  bandwidth: number;
  /** Free space to keep on the state directory's disk beyond the archive. */
  reserveBytes: number;
  /** Archive size limit (config limits.archiveBytes). */
  maxBytes: number;
  allowedSchemes: Array<'https' | 'http' | 'file'>;
  /** Hostnames, exact or "*.example.com"; empty allows any host. */
  allowedHosts: string[];
  allowUnverified: boolean;
  progressIntervalMs: number;
  /** fetch.mirrors, longest prefix first; a mirror's host is allowed by being configured. */
  mirrors: Mirror[];
  /** From HTTPS_PROXY, HTTP_PROXY, NO_PROXY. */
  proxy: ProxySettings;
  /** fetch.credentials: what this node presents to private stores, per host. */
  credentials: CredentialRule[];
}

export function fetchPolicyFromConfig(config: Config, env: NodeJS.ProcessEnv = process.env): FetchPolicy {
  const f = config.fetch;
  return {
    attempts: f.attempts,
    backoffBaseMs: f.backoffBaseMs,
    backoffMaxMs: f.backoffMaxMs,
    connectTimeoutMs: f.connectTimeoutMs,
    stallTimeoutMs: f.stallTimeoutMs,
    // A bandwidth cap below the floor would make every download "slow": the floor stays under the cap.
    lowSpeedBytesPerSec: f.bandwidth > 0 ? Math.min(f.lowSpeedBytesPerSec, Math.floor(f.bandwidth / 2)) : f.lowSpeedBytesPerSec,
    lowSpeedWindowMs: f.lowSpeedWindowMs,
    bandwidth: f.bandwidth,
    reserveBytes: f.reserveBytes,
    maxBytes: config.limits.archiveBytes,
    allowedSchemes: [...f.allowedSchemes],
    allowedHosts: [...f.allowedHosts],
    allowUnverified: config.allowUnverified,
    progressIntervalMs: f.progressIntervalMs,
    mirrors: parseMirrors(f.mirrors),
    proxy: proxyFromEnv(env),
    credentials: parseCredentials(f.credentials),
  };
}
