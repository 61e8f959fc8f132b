// RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value, so a signature
// over it survives re-serialisation on the way (KubeEdge's router re-encodes messages in Go:
// other key order, other escapes). Members sorted by UTF-16 code units, no whitespace, numbers
// as ECMAScript prints them, strings escaped as JSON.stringify does (RFC 8785 §3.2.2 is that).

export class NotCanonicalizable extends Error {}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new NotCanonicalizable(`${value} is not a JSON number`);
    return JSON.stringify(value);
  }
  if (typeof value === 'string') {
    // I-JSON (RFC 7493), which RFC 8785 requires: no lone surrogates.
    if (LONE_SURROGATE.test(value)) throw new NotCanonicalizable('a string holds a lone surrogate');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    // Array.prototype.sort compares UTF-16 code units, which is the order RFC 8785 §3.2.3 asks.
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${canonicalJson(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new NotCanonicalizable(`a ${typeof value} is not JSON`);
}
