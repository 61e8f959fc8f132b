import type { DB } from './db.js';

// Replay protection (issue 14), durable: the newest accepted (generation, sequence) per node and
// resource, and the highest sequence accepted per node (hello.lastSequence).

export interface Accepted {
  uid?: string;
  generation: number;
  sequence: number;
}

export class FreshnessTable {
  constructor(private readonly db: DB) {}

  get(node: string, resource: string): Accepted | undefined {
    const row = this.db.prepare('SELECT uid, generation, sequence FROM accepted_messages WHERE node = ? AND resource = ?').get(node, resource) as
      | { uid: string | null; generation: number; sequence: number }
      | undefined;
    return row && { uid: row.uid ?? undefined, generation: row.generation, sequence: row.sequence };
  }

  /** Records an accepted message of the resource and raises the node's highest sequence. */
  accept(node: string, resource: string, a: Accepted): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO accepted_messages (node, resource, uid, generation, sequence) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (node, resource) DO UPDATE SET uid = excluded.uid, generation = excluded.generation, sequence = excluded.sequence`,
        )
        .run(node, resource, a.uid ?? null, a.generation, a.sequence);
      this.raise(node, a.sequence);
    })();
  }

  raise(node: string, sequence: number): void {
    this.db
      .prepare('INSERT INTO node_sequences (node, max_sequence) VALUES (?, ?) ON CONFLICT (node) DO UPDATE SET max_sequence = max(max_sequence, excluded.max_sequence)')
      .run(node, sequence);
  }

  /** The highest sequence accepted for the node; undefined before the first. */
  maxSequence(node: string): number | undefined {
    const row = this.db.prepare('SELECT max_sequence FROM node_sequences WHERE node = ?').get(node) as { max_sequence: number } | undefined;
    return row?.max_sequence;
  }
}
