// A site mirror: `fetch.mirrors` maps a URL prefix (an origin and a path) to another, so a fleet
// behind one uplink downloads from a local cache. The spec's URL is checked against the node's
// policy first; the digest is checked on whatever bytes the mirror sends.

export interface Mirror {
  /** Origin and path prefix of the URLs it serves, the path ending in "/". */
  from: URL;
  /** Where those URLs are fetched instead, same form. */
  to: URL;
}

/** Why a prefix cannot be a mirror's, or undefined when it can. */
export function prefixProblem(prefix: string): string | undefined {
  let u: URL;
  try {
    u = new URL(prefix);
  } catch {
    return 'is not an absolute URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must be an http: or https: URL';
  if (u.username || u.password) return 'must not carry credentials';
  if (u.search || u.hash || prefix.includes('?') || prefix.includes('#')) return 'must not have a query or fragment';
  return undefined;
}

/** The path prefix ends in "/", so "/models" never matches "/models-private/...". */
function asPrefix(prefix: string): URL {
  const u = new URL(prefix);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

/** The configured map, longest prefix first (the most specific mirror wins). */
export function parseMirrors(map: Record<string, string>): Mirror[] {
  return Object.entries(map)
    .map(([from, to]) => ({ from: asPrefix(from), to: asPrefix(to) }))
    .sort((a, b) => b.from.href.length - a.from.href.length);
}

/** The URL to fetch instead of `url`, or undefined when no mirror serves it. */
export function viaMirror(url: URL, mirrors: readonly Mirror[]): URL | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  for (const m of mirrors) {
    if (url.origin !== m.from.origin || !url.pathname.startsWith(m.from.pathname)) continue;
    const out = new URL(m.to.href);
    out.pathname = m.to.pathname + url.pathname.slice(m.from.pathname.length);
    out.search = url.search;
    return out;
  }
  return undefined;
}
