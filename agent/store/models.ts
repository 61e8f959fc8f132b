import type { Phase } from '../../shared/index.js';
import type { StatusReason } from '../errors.js';
import type { DB } from './db.js';

/** What the node actually has for one model: the pointer state that survives restarts. */
// A tree is a version and the digest of its archive (install/tree-ref.ts): each *Version below
// goes with the *Sha256 beside it. A digest is undefined only for what was recorded before
// digests were (a failure then blocks every tree of its version).
export interface ModelState {
  namespace: string;
  name: string;
  phase: Phase;
  /** What `current` points at. */
  servingVersion?: string;
  servingSha256?: string;
  /** What served before: kept for rollback. */
  previousVersion?: string;
  previousSha256?: string;
  /** A tree that failed to install or start; not retried until the spec changes. */
  failedVersion?: string;
  failedSha256?: string;
  failedSpecHash?: string;
  failedReason?: StatusReason;
  failedMessage?: string;
  /** Set by a rollback: serve this tree instead of the target while the spec is unchanged. */
  heldVersion?: string;
  heldSha256?: string;
  heldSpecHash?: string;
  /** A switch happened since the last gc: an older tree may have lost its protection. */
  gcDue?: boolean;
  /** A local hold (`modeld defer`): no switch to a new tree before this (epoch ms). */
  deferredUntil?: number;
  /** When that hold was first placed (epoch ms): extensions stay within deferral.maxSeconds of it. */
  deferredSince?: number;
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
  // Absent when read from a database not yet migrated (the read-only status of an older state directory).
  serving_sha256?: string | null; previous_sha256?: string | null; held_sha256?: string | null; failed_sha256?: string | null;
  gc_due?: number;
  deferred_until?: number | null; deferred_since?: number | null;
  reason: StatusReason | null; message: string | null; observed_generation: number; updated_at: number;
}

const fromRow = (r: Row): ModelState => ({
  namespace: r.namespace, name: r.name, phase: r.phase,
  servingVersion: r.serving_version ?? undefined, servingSha256: r.serving_sha256 ?? undefined,
  previousVersion: r.previous_version ?? undefined, previousSha256: r.previous_sha256 ?? undefined,
  failedVersion: r.failed_version ?? undefined, failedSha256: r.failed_sha256 ?? undefined, failedSpecHash: r.failed_spec_hash ?? undefined,
  failedReason: r.failed_reason ?? undefined, failedMessage: r.failed_message ?? undefined,
  heldVersion: r.held_version ?? undefined, heldSha256: r.held_sha256 ?? undefined, heldSpecHash: r.held_spec_hash ?? undefined,
  gcDue: r.gc_due === 1,
  deferredUntil: r.deferred_until ?? undefined, deferredSince: r.deferred_since ?? undefined,
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
          `INSERT INTO models (namespace, name, phase, serving_version, serving_sha256, previous_version, previous_sha256,
             failed_version, failed_sha256, failed_spec_hash, failed_reason, failed_message,
             held_version, held_sha256, held_spec_hash, gc_due, deferred_until, deferred_since, reason, message, observed_generation, updated_at)
           VALUES (@namespace, @name, @phase, @servingVersion, @servingSha256, @previousVersion, @previousSha256,
             @failedVersion, @failedSha256, @failedSpecHash, @failedReason, @failedMessage,
             @heldVersion, @heldSha256, @heldSpecHash, @gcDue, @deferredUntil, @deferredSince, @reason, @message, @observedGeneration, @updatedAt)
           ON CONFLICT (namespace, name) DO UPDATE SET phase = excluded.phase,
             serving_version = excluded.serving_version, serving_sha256 = excluded.serving_sha256,
             previous_version = excluded.previous_version, previous_sha256 = excluded.previous_sha256,
             failed_version = excluded.failed_version, failed_sha256 = excluded.failed_sha256, failed_spec_hash = excluded.failed_spec_hash,
             failed_reason = excluded.failed_reason, failed_message = excluded.failed_message,
             held_version = excluded.held_version, held_sha256 = excluded.held_sha256, held_spec_hash = excluded.held_spec_hash,
             gc_due = excluded.gc_due, deferred_until = excluded.deferred_until, deferred_since = excluded.deferred_since, reason = excluded.reason, message = excluded.message,
             observed_generation = excluded.observed_generation, updated_at = excluded.updated_at`,
        )
        .run({
          namespace, name, phase: next.phase,
          servingVersion: next.servingVersion ?? null, servingSha256: next.servingSha256 ?? null,
          previousVersion: next.previousVersion ?? null, previousSha256: next.previousSha256 ?? null,
          failedVersion: next.failedVersion ?? null, failedSha256: next.failedSha256 ?? null, failedSpecHash: next.failedSpecHash ?? null,
          failedReason: next.failedReason ?? null, failedMessage: next.failedMessage ?? null,
          heldVersion: next.heldVersion ?? null, heldSha256: next.heldSha256 ?? null, heldSpecHash: next.heldSpecHash ?? null,
          gcDue: next.gcDue ? 1 : 0,
          deferredUntil: next.deferredUntil ?? null, deferredSince: next.deferredSince ?? null,
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
