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

export function migrate(db: DB): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
