import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type DB = Database.Database;

// Migrations by user_version: append only, never edit one that has shipped.
const MIGRATIONS: string[] = [
  `
  CREATE TABLE specs (
    namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT, generation INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,              -- JSON, as validated
    msg_id TEXT NOT NULL DEFAULT '', -- the message that set it: status echoes it as parent_msg_id
    source TEXT NOT NULL DEFAULT 'cloud',  -- 'cloud' or 'local' (modeld apply)
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
  );
  CREATE TABLE models (
    namespace TEXT NOT NULL, name TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'Pending',
    serving_version TEXT,            -- what current points at
    previous_version TEXT,           -- kept for rollback
    failed_version TEXT,             -- not retried until the spec changes
    failed_spec_hash TEXT,           -- the spec it failed under
    failed_reason TEXT, failed_message TEXT,
    held_version TEXT,               -- rollback: serve this one instead of the target...
    held_spec_hash TEXT,             -- ...while the spec stays this one
    reason TEXT, message TEXT,
    observed_generation INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
  );
  CREATE TABLE versions (
    namespace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    sha256 TEXT,
    installed_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version)
  );
  CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',  -- url, or 'seed:<file>'
    verified_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
  );
  CREATE TABLE downloads (
    key TEXT PRIMARY KEY,             -- expected sha256, or 'url:' + sha256(url) when unverified
    url TEXT NOT NULL,
    etag TEXT, last_modified TEXT,
    total_bytes INTEGER,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    namespace TEXT, name TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
  );
  CREATE INDEX events_model ON events (namespace, name, id);
  `,
  // 2: installed trees keyed by version AND archive digest (a version republished with other
  // bytes is another tree, installed beside the serving one); the models row names trees.
  `
  CREATE TABLE versions_by_digest (
    namespace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',  -- of the archive; '' only for a tree installed before digests were recorded
    installed_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version, sha256)
  );
  INSERT INTO versions_by_digest (namespace, name, version, sha256, installed_at)
    SELECT namespace, name, version, lower(COALESCE(sha256, '')), installed_at FROM versions;
  DROP TABLE versions;
  ALTER TABLE versions_by_digest RENAME TO versions;
  ALTER TABLE models ADD COLUMN serving_sha256 TEXT;
  ALTER TABLE models ADD COLUMN previous_sha256 TEXT;
  ALTER TABLE models ADD COLUMN held_sha256 TEXT;
  ALTER TABLE models ADD COLUMN failed_sha256 TEXT;
  ALTER TABLE models ADD COLUMN gc_due INTEGER NOT NULL DEFAULT 0;  -- a switch since the last gc
  UPDATE models SET
    serving_sha256 = (SELECT NULLIF(v.sha256, '') FROM versions v WHERE v.namespace = models.namespace AND v.name = models.name AND v.version = models.serving_version),
    previous_sha256 = (SELECT NULLIF(v.sha256, '') FROM versions v WHERE v.namespace = models.namespace AND v.name = models.name AND v.version = models.previous_version),
    held_sha256 = (SELECT NULLIF(v.sha256, '') FROM versions v WHERE v.namespace = models.namespace AND v.name = models.name AND v.version = models.held_version);
  `,
  // 3: statuses stay in the outbox until the controller acks their msg_id (end to end, not just
  // the broker's PUBACK) and are published again when no ack came by due_at.
  `
  ALTER TABLE outbox ADD COLUMN msg_id TEXT;            -- set: kept until an ack names it
  ALTER TABLE outbox ADD COLUMN model_key TEXT;         -- ns/name: a newer status supersedes a published one
  ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;  -- publishes so far
  ALTER TABLE outbox ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0;    -- publish (again) from then on
  CREATE INDEX outbox_msg_id ON outbox (msg_id);
  CREATE INDEX outbox_model_key ON outbox (model_key);
  `,
  // 4: a local hold on the model's switch (`modeld defer`): a new version is fetched and installed
  // but not switched to before deferred_until; deferred_since bounds extensions (deferral.maxSeconds).
  `
  ALTER TABLE models ADD COLUMN deferred_until INTEGER;  -- epoch ms
  ALTER TABLE models ADD COLUMN deferred_since INTEGER;  -- epoch ms, when the hold was first placed
  `,
  // 5: signed messages (issue 14): the newest accepted message per node and resource, and the
  // highest header.sequence per node, so a replay is refused after a restart too.
  `
  CREATE TABLE accepted_messages (
    node TEXT NOT NULL, resource TEXT NOT NULL,   -- resource: ns/name, or _sync
    uid TEXT, generation INTEGER NOT NULL, sequence INTEGER NOT NULL,
    PRIMARY KEY (node, resource)
  );
  CREATE TABLE node_sequences (node TEXT PRIMARY KEY, max_sequence INTEGER NOT NULL);
  `,
];

/** Opens (creating if needed) the state database: WAL, foreign keys, migrations applied. */
export function openDatabase(path: string): DB {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 10_000 });
  db.pragma('journal_mode = WAL');
  // FULL: a status in the outbox or a switched version survives a power cut, not just a crash.
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}

/** The user_version of a database with every migration applied. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Applies the migrations not applied yet, up to `to` (default: all; tests build old databases with it). */
export function migrate(db: DB, opts: { to?: number } = {}): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < Math.min(opts.to ?? MIGRATIONS.length, MIGRATIONS.length); v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
