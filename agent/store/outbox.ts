import type { DB } from './db.js';

/**
 * Messages written before they are published. One without a msg_id leaves once the broker acked
 * it (PUBACK); one with a msg_id stays until the controller acks that msg_id end to end, and is
 * published again each time it falls due meanwhile.
 */
export interface OutboxEntry {
  seq: number;
  topic: string;
  payload: string;
  retain: boolean;
  msgId?: string;
  /** How many times it was published (and PUBACKed) so far. */
  attempts: number;
}

export interface OutboxAddOptions {
  retain?: boolean;
  /** Keep until an ack names this msg_id. */
  msgId?: string;
  /** `namespace/name`: this status replaces the ones for the same model that were already published. */
  key?: string;
}

interface Row { seq: number; topic: string; payload: string; retain: number; msg_id: string | null; attempts: number }

const entry = (r: Row): OutboxEntry => ({
  seq: r.seq, topic: r.topic, payload: r.payload, retain: r.retain === 1, attempts: r.attempts, ...(r.msg_id ? { msgId: r.msg_id } : {}),
});

export class OutboxTable {
  constructor(private readonly db: DB) {}

  add(topic: string, payload: string, opts: OutboxAddOptions | boolean = {}): number {
    const o = typeof opts === 'boolean' ? { retain: opts } : opts;
    return this.db.transaction(() => {
      // A status is the model's whole state: once a newer one is queued, an older one that already
      // went out once needs no resend. One never published stays (every status goes out, in order).
      if (o.key) this.db.prepare('DELETE FROM outbox WHERE model_key = ? AND attempts > 0 AND msg_id IS NOT NULL').run(o.key);
      return Number(
        this.db
          .prepare('INSERT INTO outbox (topic, payload, retain, created_at, msg_id, model_key) VALUES (?, ?, ?, ?, ?, ?)')
          .run(topic, payload, o.retain ? 1 : 0, Date.now(), o.msgId ?? null, o.key ?? null).lastInsertRowid,
      );
    })();
  }

  /** The oldest entries, in order, due or not. */
  peek(limit: number): OutboxEntry[] {
    return (this.db.prepare('SELECT seq, topic, payload, retain, msg_id, attempts FROM outbox ORDER BY seq LIMIT ?').all(limit) as Row[]).map(entry);
  }

  /** The oldest entries to publish now: never published, or awaiting an ack past their due time. */
  due(limit: number, now = Date.now()): OutboxEntry[] {
    return (this.db.prepare('SELECT seq, topic, payload, retain, msg_id, attempts FROM outbox WHERE due_at <= ? ORDER BY seq LIMIT ?').all(now, limit) as Row[]).map(entry);
  }

  /** Records a publish the broker acked; the entry waits for the controller's ack until dueAt. */
  published(seq: number, attempts: number, dueAt: number): void {
    this.db.prepare('UPDATE outbox SET attempts = ?, due_at = ? WHERE seq = ?').run(attempts, dueAt, seq);
  }

  /** Forgets the entries the controller acked; returns how many there were. */
  ack(msgIds: string[]): number {
    const del = this.db.prepare('DELETE FROM outbox WHERE msg_id = ?');
    return this.db.transaction(() => msgIds.reduce((n, id) => n + del.run(id).changes, 0))();
  }

  /** When the earliest entry falls due (undefined: the outbox is empty). */
  nextDue(): number | undefined {
    return (this.db.prepare('SELECT MIN(due_at) AS t FROM outbox').get() as { t: number | null }).t ?? undefined;
  }

  remove(seq: number): void {
    this.db.prepare('DELETE FROM outbox WHERE seq = ?').run(seq);
  }

  depth(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
  }

  /** Entries published at least once and still waiting for the controller's ack. */
  awaitingAck(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM outbox WHERE msg_id IS NOT NULL AND attempts > 0').get() as { n: number }).n;
  }
}
