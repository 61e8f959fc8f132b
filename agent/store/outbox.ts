import type { DB } from './db.js';

/** Messages written before they are published, removed only once the broker acknowledged them. */
export interface OutboxEntry {
  seq: number;
  topic: string;
  payload: string;
  retain: boolean;
}

interface Row { seq: number; topic: string; payload: string; retain: number }

export class OutboxTable {
  constructor(private readonly db: DB) {}

  add(topic: string, payload: string, retain = false): number {
    return Number(
      this.db.prepare('INSERT INTO outbox (topic, payload, retain, created_at) VALUES (?, ?, ?, ?)').run(topic, payload, retain ? 1 : 0, Date.now())
        .lastInsertRowid,
    );
  }

  /** The oldest entries, in order. */
  peek(limit: number): OutboxEntry[] {
    return (this.db.prepare('SELECT seq, topic, payload, retain FROM outbox ORDER BY seq LIMIT ?').all(limit) as Row[]).map((r) => ({
      seq: r.seq, topic: r.topic, payload: r.payload, retain: r.retain === 1,
    }));
  }

  remove(seq: number): void {
    this.db.prepare('DELETE FROM outbox WHERE seq = ?').run(seq);
  }

  depth(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
  }
}
