import type { InferenceModelSpec } from '../../shared/index.js';
import type { DB } from './db.js';

/** The desired state: the latest accepted spec of every model meant for this node. */
export interface DesiredSpec {
  namespace: string;
  name: string;
  uid?: string;
  generation: number;
  spec: InferenceModelSpec;
  msgId: string;
  source: 'cloud' | 'local';
  updatedAt: number;
}

interface Row {
  namespace: string; name: string; uid: string | null; generation: number;
  spec: string; msg_id: string; source: 'cloud' | 'local'; updated_at: number;
}

const fromRow = (r: Row): DesiredSpec => ({
  namespace: r.namespace, name: r.name, uid: r.uid ?? undefined, generation: r.generation,
  spec: JSON.parse(r.spec) as InferenceModelSpec, msgId: r.msg_id, source: r.source, updatedAt: r.updated_at,
});

export class SpecTable {
  constructor(private readonly db: DB) {}

  get(namespace: string, name: string): DesiredSpec | undefined {
    const row = this.db.prepare('SELECT * FROM specs WHERE namespace = ? AND name = ?').get(namespace, name) as Row | undefined;
    return row && fromRow(row);
  }

  list(): DesiredSpec[] {
    return (this.db.prepare('SELECT * FROM specs ORDER BY namespace, name').all() as Row[]).map(fromRow);
  }

  put(s: DesiredSpec): void {
    this.db
      .prepare(
        `INSERT INTO specs (namespace, name, uid, generation, spec, msg_id, source, updated_at)
         VALUES (@namespace, @name, @uid, @generation, @spec, @msgId, @source, @updatedAt)
         ON CONFLICT (namespace, name) DO UPDATE SET uid = excluded.uid, generation = excluded.generation,
           spec = excluded.spec, msg_id = excluded.msg_id, source = excluded.source, updated_at = excluded.updated_at`,
      )
      .run({ ...s, uid: s.uid ?? null, spec: JSON.stringify(s.spec) });
  }

  delete(namespace: string, name: string): boolean {
    return this.db.prepare('DELETE FROM specs WHERE namespace = ? AND name = ?').run(namespace, name).changes > 0;
  }
}
