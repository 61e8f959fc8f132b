import { createHash } from 'node:crypto';
import type { InferenceModelSpec } from '../../shared/index.js';

/** Identifies a spec's content: a failure or a rollback hold applies until the spec changes. */
export function specHash(spec: InferenceModelSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 32);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
