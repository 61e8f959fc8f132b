import type { DB } from './db.js';

/** Versions unpacked and verified under models/<ns>/<name>/versions/<v>/. */
export interface InstalledVersion {
  namespace: string;
  name: string;
  version: string;
  sha256?: string;
  installedAt: number;
}

interface Row { namespace: string; name: string; version: string; sha256: string | null; installed_at: number }
const fromRow = (r: Row): InstalledVersion => ({
  namespace: r.namespace, name: r.name, version: r.version, sha256: r.sha256 ?? undefined, installedAt: r.installed_at,
});

export class VersionTable {
  constructor(private readonly db: DB) {}

  get(namespace: string, name: string, version: string): InstalledVersion | undefined {
    const row = this.db
      .prepare('SELECT * FROM versions WHERE namespace = ? AND name = ? AND version = ?')
      .get(namespace, name, version) as Row | undefined;
    return row && fromRow(row);
  }

  listFor(namespace: string, name: string): InstalledVersion[] {
    return (this.db.prepare('SELECT * FROM versions WHERE namespace = ? AND name = ? ORDER BY installed_at').all(namespace, name) as Row[]).map(fromRow);
  }

  list(): InstalledVersion[] {
    return (this.db.prepare('SELECT * FROM versions ORDER BY namespace, name, installed_at').all() as Row[]).map(fromRow);
  }

  put(v: Omit<InstalledVersion, 'installedAt'> & { installedAt?: number }): void {
    this.db
      .prepare(
        `INSERT INTO versions (namespace, name, version, sha256, installed_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (namespace, name, version) DO UPDATE SET sha256 = excluded.sha256, installed_at = excluded.installed_at`,
      )
      .run(v.namespace, v.name, v.version, v.sha256 ?? null, v.installedAt ?? Date.now());
  }

  delete(namespace: string, name: string, version: string): void {
    this.db.prepare('DELETE FROM versions WHERE namespace = ? AND name = ? AND version = ?').run(namespace, name, version);
  }
}
