import { ModeldError } from '../errors.js';
import type { FetchPolicy } from './policy.js';

const KNOWN_SCHEMES = ['https', 'http', 'file'] as const;
const MAX_URL_LENGTH = 8192;

const refuse = (url: string, reason: string) =>
  new ModeldError('URLNotAllowed', `download URL refused: ${reason}`, { details: { url: redact(url), reason } });

/** Never echo credentials back into logs or status messages. */
function redact(url: string): string {
  return url.length > 200 ? `${url.slice(0, 200)}...` : url.replace(/\/\/[^/@]*@/, '//***@');
}

function hostAllowed(host: string, allowed: string[]): boolean {
  if (allowed.length === 0) return true;
  const h = host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase().replace(/^\[|\]$/g, '');
    // "*.example.com" matches any subdomain but not example.com itself.
    return p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
  });
}

/**
 * The URL as parsed, if the node's policy allows fetching it; otherwise ModeldError('URLNotAllowed')
 * with the reason. Checked before any request, and again on every redirect. A configured mirror's
 * host (and port) is allowed by being configured.
 */
export function checkUrl(url: string, policy: FetchPolicy): URL {
  if (typeof url !== 'string' || url.length === 0) throw refuse(String(url), 'empty URL');
  if (url.length > MAX_URL_LENGTH) throw refuse(url, `longer than ${MAX_URL_LENGTH} characters`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw refuse(url, 'not a valid absolute URL');
  }
  const scheme = parsed.protocol.replace(/:$/, '').toLowerCase();
  if (!(KNOWN_SCHEMES as readonly string[]).includes(scheme)) {
    throw refuse(url, `scheme "${scheme}:" is not supported (only https:, http: and file:)`);
  }
  if (!policy.allowedSchemes.includes(scheme as (typeof KNOWN_SCHEMES)[number])) {
    throw refuse(url, `scheme "${scheme}:" is not allowed by fetch.allowedSchemes (${policy.allowedSchemes.join(', ') || 'none'})`);
  }
  if (parsed.username || parsed.password) throw refuse(url, 'credentials in the URL are not allowed (a private store takes them from fetch.credentials on the node)');
  if (scheme === 'file') {
    if (parsed.hostname && parsed.hostname !== 'localhost') throw refuse(url, `file: URL names a remote host "${parsed.hostname}"`);
    return parsed;
  }
  if (!parsed.hostname) throw refuse(url, 'no host');
  if (!hostAllowed(parsed.hostname, policy.allowedHosts) && !policy.mirrors.some((m) => m.to.host === parsed.host)) {
    throw refuse(url, `host "${parsed.hostname}" is not in fetch.allowedHosts`);
  }
  return parsed;
}
