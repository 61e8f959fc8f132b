import type { DB } from './db.js';

/** A download in progress: what is needed to resume it with Range after a restart. */
export interface DownloadRecord {
  key: string;
  url: string;
  etag?: string;
  lastModified?: string;
  totalBytes?: number;
  bytesDone: number;
  attempts: number;
  updatedAt: number;
}

interface Row {
  key: string; url: string; etag: string | null; last_modified: string | null;
  total_bytes: number | null; bytes_done: number; attempts: number; updated_at: number;
}
const fromRow = (r: Row): DownloadRecord => ({
  key: r.key, url: r.url, etag: r.etag ?? undefined, lastModified: r.last_modified ?? undefined,
  totalBytes: r.total_bytes ?? undefined, bytesDone: r.bytes_done, attempts: r.attempts, updatedAt: r.updated_at,
});

export class DownloadTable {
  constructor(private readonly db: DB) {}

  get(key: string): DownloadRecord | undefined {
    const row = this.db.prepare('SELECT * FROM downloads WHERE key = ?').get(key) as Row | undefined;
    return row && fromRow(row);
  }

  list(): DownloadRecord[] {
    return (this.db.prepare('SELECT * FROM downloads').all() as Row[]).map(fromRow);
  }

  put(d: Omit<DownloadRecord, 'updatedAt'>): void {
    this.db
      .prepare(
        `INSERT INTO downloads (key, url, etag, last_modified, total_bytes, bytes_done, attempts, updated_at)
         VALUES (@key, @url, @etag, @lastModified, @totalBytes, @bytesDone, @attempts, @updatedAt)
         ON CONFLICT (key) DO UPDATE SET url = excluded.url, etag = excluded.etag, last_modified = excluded.last_modified,
           total_bytes = excluded.total_bytes, bytes_done = excluded.bytes_done, attempts = excluded.attempts,
           updated_at = excluded.updated_at`,
      )
      .run({ ...d, etag: d.etag ?? null, lastModified: d.lastModified ?? null, totalBytes: d.totalBytes ?? null, updatedAt: Date.now() });
  }

  delete(key: string): void {
    this.db.prepare('DELETE FROM downloads WHERE key = ?').run(key);
  }
}
