import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { ModeldError } from '../errors.js';

// Credentials for private model stores, per host, from files on the node: never from the cloud's
// spec (a spec names a URL, and the node decides what it may present there), never in a log or a
// status. Files are read at each request, so a rotated token is used without a restart.

export interface HostCredentials {
  /** File holding a bearer token (an OAuth access token, a registry token): `Authorization: Bearer`. */
  bearerTokenFile?: string;
  /** File holding `user:password`: `Authorization: Basic`. */
  basicAuthFile?: string;
  /** PEM client certificate and key files (mutual TLS). */
  clientCertFile?: string;
  clientKeyFile?: string;
  /** PEM CA bundle that signs the store's certificate (a site CA), in place of the system's. */
  caFile?: string;
}

export interface CredentialRule extends HostCredentials {
  /** Exact hostname[:port], or "*.example.com" for every subdomain. */
  host: string;
}

/** What is wrong with one entry of fetch.credentials, or undefined. */
export function credentialProblem(host: string, c: HostCredentials): string | undefined {
  if (!/^(\*\.[a-z0-9.-]+|[a-z0-9.-]+(:\d{1,5})?)$/i.test(host)) return `"${host}" is not a host name (name, name:port or *.domain)`;
  if (c.bearerTokenFile && c.basicAuthFile) return 'give bearerTokenFile or basicAuthFile, not both';
  if (!!c.clientCertFile !== !!c.clientKeyFile) return 'clientCertFile and clientKeyFile go together';
  for (const [k, v] of Object.entries(c)) if (typeof v === 'string' && !isAbsolute(v)) return `${k} must be an absolute path`;
  return undefined;
}

export function parseCredentials(map: Record<string, HostCredentials>): CredentialRule[] {
  // Exact names before wildcards, so a host can be special-cased under a wildcard rule.
  return Object.entries(map)
    .map(([host, c]) => ({ ...c, host: host.toLowerCase() }))
    .sort((a, b) => Number(a.host.startsWith('*.')) - Number(b.host.startsWith('*.')) || b.host.length - a.host.length);
}

function matches(rule: string, url: URL): boolean {
  const host = url.hostname.toLowerCase();
  const withPort = url.port ? `${host}:${url.port}` : host;
  // "*.example.com" names every subdomain on any port, not example.com itself.
  if (rule.startsWith('*.')) return host.endsWith(rule.slice(1));
  return rule === host || rule === withPort;
}

export function credentialsFor(url: URL, rules: readonly CredentialRule[]): CredentialRule | undefined {
  return rules.find((r) => matches(r.host, url));
}

const refuse = (rule: CredentialRule, message: string, cause?: unknown) =>
  new ModeldError('DownloadFailed', `fetch.credentials for ${rule.host}: ${message}`, { retryable: false, cause, details: { host: rule.host } });

function readSecret(rule: CredentialRule, key: keyof HostCredentials): string {
  const file = rule[key]!;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    // The file's name may be said; its content never.
    throw refuse(rule, `cannot read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
}

/** The Authorization header for `url`, if a rule gives one; refuses to send one over plain http. */
export function authorizationFor(url: URL, rules: readonly CredentialRule[]): string | undefined {
  const rule = credentialsFor(url, rules);
  if (!rule || (!rule.bearerTokenFile && !rule.basicAuthFile)) return undefined;
  if (url.protocol !== 'https:') throw refuse(rule, `credentials are sent over https only, and ${url.protocol}//${url.host} is not`);
  if (rule.bearerTokenFile) {
    const token = readSecret(rule, 'bearerTokenFile');
    if (!token || /[\r\n]/.test(token)) throw refuse(rule, `bearerTokenFile ${rule.bearerTokenFile} is empty or holds more than one line`);
    return `Bearer ${token}`;
  }
  const pair = readSecret(rule, 'basicAuthFile');
  if (!pair.includes(':') || /[\r\n]/.test(pair)) throw refuse(rule, `basicAuthFile ${rule.basicAuthFile} must hold one line "user:password"`);
  return `Basic ${Buffer.from(pair).toString('base64')}`;
}

/** TLS options (client certificate, CA) for connections to `origin`, if a rule gives them. */
export function tlsFor(origin: URL, rules: readonly CredentialRule[]): { cert?: string; key?: string; ca?: string } {
  const rule = credentialsFor(origin, rules);
  if (!rule || origin.protocol !== 'https:') return {};
  return {
    ...(rule.clientCertFile ? { cert: readSecret(rule, 'clientCertFile'), key: readSecret(rule, 'clientKeyFile') } : {}),
    ...(rule.caFile ? { ca: readSecret(rule, 'caFile') } : {}),
  };
}
