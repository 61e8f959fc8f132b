import type { TreeRef } from '../install/tree-ref.js';
import type { DB } from './db.js';

/** Trees unpacked and verified under models/<ns>/<name>/versions/<version>@<sha256>/. */
export interface InstalledVersion {
  namespace: string;
  name: string;
  version: string;
  /** The archive's digest; undefined only for a tree installed before digests were recorded. */
  sha256?: string;
  installedAt: number;
}

interface Row { namespace: string; name: string; version: string; sha256: string | null; installed_at: number }
const fromRow = (r: Row): InstalledVersion => ({
  namespace: r.namespace, name: r.name, version: r.version, sha256: r.sha256 || undefined, installedAt: r.installed_at,
});

/** One row per installed tree: a version republished with other bytes has two. */
export class VersionTable {
  constructor(private readonly db: DB) {}

  get(namespace: string, name: string, tree: TreeRef): InstalledVersion | undefined {
    const row = this.db
      .prepare('SELECT * FROM versions WHERE namespace = ? AND name = ? AND version = ? AND sha256 = ?')
      .get(namespace, name, tree.version, tree.sha256?.toLowerCase() ?? '') as Row | undefined;
    return row && fromRow(row);
  }

  /** Oldest first. */
  listFor(namespace: string, name: string): InstalledVersion[] {
    return (this.db.prepare('SELECT * FROM versions WHERE namespace = ? AND name = ? ORDER BY installed_at, sha256').all(namespace, name) as Row[]).map(fromRow);
  }

  list(): InstalledVersion[] {
    return (this.db.prepare('SELECT * FROM versions ORDER BY namespace, name, installed_at, sha256').all() as Row[]).map(fromRow);
  }

  put(v: Omit<InstalledVersion, 'installedAt'> & { installedAt?: number }): void {
    this.db
      .prepare(
        `INSERT INTO versions (namespace, name, version, sha256, installed_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (namespace, name, version, sha256) DO UPDATE SET installed_at = excluded.installed_at`,
      )
      .run(v.namespace, v.name, v.version, v.sha256?.toLowerCase() ?? '', v.installedAt ?? Date.now());
  }

  delete(namespace: string, name: string, tree: TreeRef): void {
    this.db.prepare('DELETE FROM versions WHERE namespace = ? AND name = ? AND version = ? AND sha256 = ?').run(namespace, name, tree.version, tree.sha256?.toLowerCase() ?? '');
  }
}
