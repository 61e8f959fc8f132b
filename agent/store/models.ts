import type { Phase } from '../../shared/index.js';
import type { StatusReason } from '../errors.js';
import type { DB } from './db.js';

/** What the node actually has for one model: the pointer state that survives restarts. */
export interface ModelState {
  namespace: string;
  name: string;
  phase: Phase;
  servingVersion?: string;
  previousVersion?: string;
  /** A version that failed to install or start; not retried until the spec changes. */
  failedVersion?: string;
  failedSpecHash?: string;
  failedReason?: StatusReason;
  failedMessage?: string;
  /** Set by a rollback: serve this version instead of the target while the spec is unchanged. */
  heldVersion?: string;
  heldSpecHash?: string;
  reason?: StatusReason;
  message?: string;
  observedGeneration: number;
  updatedAt: number;
}

/** A row as SQLite returns it; `reason` columns hold the codes this agent wrote. */
interface Row {
  namespace: string; name: string; phase: Phase;
  serving_version: string | null; previous_version: string | null;
  failed_version: string | null; failed_spec_hash: string | null;
  failed_reason: StatusReason | null; failed_message: string | null;
  held_version: string | null; held_spec_hash: string | null;
  reason: StatusReason | null; message: string | null; observed_generation: number; updated_at: number;
}

const fromRow = (r: Row): ModelState => ({
  namespace: r.namespace, name: r.name, phase: r.phase,
  servingVersion: r.serving_version ?? undefined, previousVersion: r.previous_version ?? undefined,
  failedVersion: r.failed_version ?? undefined, failedSpecHash: r.failed_spec_hash ?? undefined,
  failedReason: r.failed_reason ?? undefined, failedMessage: r.failed_message ?? undefined,
  heldVersion: r.held_version ?? undefined, heldSpecHash: r.held_spec_hash ?? undefined,
  reason: r.reason ?? undefined, message: r.message ?? undefined,
  observedGeneration: r.observed_generation, updatedAt: r.updated_at,
});

export class ModelTable {
  constructor(private readonly db: DB) {}

  get(namespace: string, name: string): ModelState | undefined {
    const row = this.db.prepare('SELECT * FROM models WHERE namespace = ? AND name = ?').get(namespace, name) as Row | undefined;
    return row && fromRow(row);
  }

  list(): ModelState[] {
    return (this.db.prepare('SELECT * FROM models ORDER BY namespace, name').all() as Row[]).map(fromRow);
  }

  /** Creates the row if needed and sets the given fields; `undefined` clears a nullable field only when present as a key. */
  update(namespace: string, name: string, patch: Partial<Omit<ModelState, 'namespace' | 'name' | 'updatedAt'>>): ModelState {
    const now = Date.now();
    const tx = this.db.transaction(() => {
      const prev = this.get(namespace, name) ?? { namespace, name, phase: 'Pending' as Phase, observedGeneration: 0, updatedAt: now };
      const next: ModelState = { ...prev, ...patch, namespace, name, updatedAt: now };
      this.db
        .prepare(
          `INSERT INTO models (namespace, name, phase, serving_version, previous_version, failed_version, failed_spec_hash, failed_reason, failed_message,
             held_version, held_spec_hash, reason, message, observed_generation, updated_at)
           VALUES (@namespace, @name, @phase, @servingVersion, @previousVersion, @failedVersion, @failedSpecHash, @failedReason, @failedMessage,
             @heldVersion, @heldSpecHash, @reason, @message, @observedGeneration, @updatedAt)
           ON CONFLICT (namespace, name) DO UPDATE SET phase = excluded.phase, serving_version = excluded.serving_version,
             previous_version = excluded.previous_version, failed_version = excluded.failed_version,
             failed_spec_hash = excluded.failed_spec_hash,
             failed_reason = excluded.failed_reason, failed_message = excluded.failed_message,
             held_version = excluded.held_version, held_spec_hash = excluded.held_spec_hash, reason = excluded.reason, message = excluded.message,
             observed_generation = excluded.observed_generation, updated_at = excluded.updated_at`,
        )
        .run({
          namespace, name, phase: next.phase,
          servingVersion: next.servingVersion ?? null, previousVersion: next.previousVersion ?? null,
          failedVersion: next.failedVersion ?? null, failedSpecHash: next.failedSpecHash ?? null,
          failedReason: next.failedReason ?? null, failedMessage: next.failedMessage ?? null,
          heldVersion: next.heldVersion ?? null, heldSpecHash: next.heldSpecHash ?? null,
          reason: next.reason ?? null, message: next.message ?? null,
          observedGeneration: next.observedGeneration, updatedAt: now,
        });
      return next;
    });
    return tx.immediate();
  }

  delete(namespace: string, name: string): void {
    this.db.prepare('DELETE FROM models WHERE namespace = ? AND name = ?').run(namespace, name);
  }
}
