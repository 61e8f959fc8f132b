import type { DB } from './db.js';

/** Verified archives in the content-addressed store (blobs/sha256/<ab>/<rest>). */
export interface BlobRecord {
  sha256: string;
  size: number;
  source: string;
  verifiedAt: number;
  lastUsedAt: number;
}

interface Row { sha256: string; size: number; source: string; verified_at: number; last_used_at: number }
const fromRow = (r: Row): BlobRecord => ({ sha256: r.sha256, size: r.size, source: r.source, verifiedAt: r.verified_at, lastUsedAt: r.last_used_at });

export class BlobTable {
  constructor(private readonly db: DB) {}

  get(sha256: string): BlobRecord | undefined {
    const row = this.db.prepare('SELECT * FROM blobs WHERE sha256 = ?').get(sha256.toLowerCase()) as Row | undefined;
    return row && fromRow(row);
  }

  list(): BlobRecord[] {
    return (this.db.prepare('SELECT * FROM blobs ORDER BY last_used_at').all() as Row[]).map(fromRow);
  }

  put(b: { sha256: string; size: number; source: string }): void {
    const now = Date.now();
    this.db
      .prepare(
        `INSERT INTO blobs (sha256, size, source, verified_at, last_used_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (sha256) DO UPDATE SET size = excluded.size, verified_at = excluded.verified_at, last_used_at = excluded.last_used_at`,
      )
      .run(b.sha256.toLowerCase(), b.size, b.source, now, now);
  }

  touch(sha256: string): void {
    this.db.prepare('UPDATE blobs SET last_used_at = ? WHERE sha256 = ?').run(Date.now(), sha256.toLowerCase());
  }

  delete(sha256: string): void {
    this.db.prepare('DELETE FROM blobs WHERE sha256 = ?').run(sha256.toLowerCase());
  }
}
