import type { BlobTable } from '../store/blobs.js';
import type { EventTable } from '../store/events.js';

// What was seeded under a model's name and version, from the `Seeded` events `modeld seed`
// records (the one writer of their message is seedMessage, so the one reader can parse it).
// A digest whose archive is no longer in the store does not count.

export function seedMessage(path: string, version: string | undefined, sha256: string, alreadyPresent: boolean): string {
  return `archive ${path}${version ? ` (version ${version})` : ''} seeded as sha256 ${sha256}${alreadyPresent ? ' (already present)' : ''}`;
}

const SEEDED = /\(version (\S+)\) seeded as sha256 ([0-9a-f]{64})/;

/** The digest last seeded for this name and version whose archive is still in the store. */
export function seededDigest(store: { events: Pick<EventTable, 'recent'>; blobs: Pick<BlobTable, 'get'> }, namespace: string, name: string, version: string): string | undefined {
  for (const e of store.events.recent(1000, { namespace, name })) {
    if (e.kind !== 'Seeded') continue;
    const m = SEEDED.exec(e.message);
    if (m && m[1] === version && store.blobs.get(m[2])) return m[2];
  }
  return undefined;
}
