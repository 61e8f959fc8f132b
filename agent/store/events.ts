import type { DB } from './db.js';

/** A bounded history of what happened, for `modeld status` and troubleshooting. */
export interface EventRecord {
  id: number;
  time: number;
  namespace?: string;
  name?: string;
  kind: string;
  message: string;
}

const KEEP = 10_000;

export class EventTable {
  private added = 0;
  constructor(private readonly db: DB) {}

  add(e: { namespace?: string; name?: string; kind: string; message: string }): void {
    this.db
      .prepare('INSERT INTO events (time, namespace, name, kind, message) VALUES (?, ?, ?, ?, ?)')
      .run(Date.now(), e.namespace ?? null, e.name ?? null, e.kind, e.message.slice(0, 4096));
    // Trim now and then rather than on every insert.
    if (++this.added % 500 === 0) this.db.prepare('DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?').run(KEEP);
  }

  /** Events of `kind` newer than the latest event of kind `after` (all of them if there is none), newest first. */
  since(after: string, kind: string): EventRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE kind = ? AND id > COALESCE((SELECT MAX(id) FROM events WHERE kind = ?), 0) ORDER BY id DESC')
      .all(kind, after);
    return toRecords(rows);
  }

  /** Events after `id`, oldest first (`modeld events --follow`). */
  after(id: number, limit: number, model?: { namespace: string; name: string }): EventRecord[] {
    const rows = model
      ? this.db.prepare('SELECT * FROM events WHERE id > ? AND namespace = ? AND name = ? ORDER BY id LIMIT ?').all(id, model.namespace, model.name, limit)
      : this.db.prepare('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?').all(id, limit);
    return toRecords(rows);
  }

  recent(limit: number, model?: { namespace: string; name: string }): EventRecord[] {
    const rows = model
      ? this.db.prepare('SELECT * FROM events WHERE namespace = ? AND name = ? ORDER BY id DESC LIMIT ?').all(model.namespace, model.name, limit)
      : this.db.prepare('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit);
    return toRecords(rows);
  }
}

const toRecords = (rows: unknown[]): EventRecord[] =>
  (rows as Array<EventRecord & { namespace: string | null; name: string | null }>).map((r) => ({ ...r, namespace: r.namespace ?? undefined, name: r.name ?? undefined }));
