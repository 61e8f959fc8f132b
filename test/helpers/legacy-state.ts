import Database from 'better-sqlite3';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceModelSpec } from '../../shared/index.js';
import { makeReadOnly } from '../../agent/install/read-only.js';
import { treeDigest } from '../../agent/install/tree-digest.js';
import { migrate } from '../../agent/store/db.js';
import { makeTree } from './archives.js';

// A state directory as agents before digest-keyed trees left it, built by hand: the database at
// user_version 1 (the first migration, which never changes), trees at versions/<v>/ with the
// completion marker, and `current -> versions/<v>`.

export interface LegacyVersion {
  version: string;
  sha256: string;
  files: Record<string, string | Buffer>;
  /** Symbolic links inside the tree: path -> target. */
  links?: Record<string, string>;
  /** Write the digest into the completion marker (default true; old enough trees lack it). */
  markerDigest?: boolean;
}

export interface LegacyModel {
  namespace: string;
  name: string;
  spec: InferenceModelSpec;
  versions: LegacyVersion[];
  current: string;
  previous?: string;
}

export async function writeLegacyState(stateDir: string, models: LegacyModel[]): Promise<void> {
  mkdirSync(stateDir, { recursive: true });
  const db = new Database(join(stateDir, 'state.db'));
  try {
    db.pragma('journal_mode = WAL');
    migrate(db, { to: 1 });
    const now = Date.now();
    for (const m of models) {
      db.prepare("INSERT INTO specs (namespace, name, uid, generation, spec, msg_id, source, updated_at) VALUES (?, ?, 'u1', 1, ?, 'm1', 'cloud', ?)").run(
        m.namespace, m.name, JSON.stringify(m.spec), now,
      );
      db.prepare("INSERT INTO models (namespace, name, phase, serving_version, previous_version, observed_generation, updated_at) VALUES (?, ?, 'Serving', ?, ?, 1, ?)").run(
        m.namespace, m.name, m.current, m.previous ?? null, now,
      );
      const modelDir = join(stateDir, 'models', m.namespace, m.name);
      for (const [i, v] of m.versions.entries()) {
        db.prepare('INSERT INTO versions (namespace, name, version, sha256, installed_at) VALUES (?, ?, ?, ?, ?)').run(m.namespace, m.name, v.version, v.sha256 || null, now + i);
        const dir = join(modelDir, 'versions', v.version);
        await makeTree(dir, v.files);
        for (const [path, target] of Object.entries(v.links ?? {})) symlinkSync(target, join(dir, path));
        const marker = { ...(v.markerDigest === false ? {} : { sha256: v.sha256 }), completedAt: now, tree: await treeDigest(dir) };
        writeFileSync(join(dir, '.modeld-complete'), JSON.stringify(marker) + '\n');
        await makeReadOnly(dir, { includeRoot: true });
      }
      symlinkSync(`versions/${m.current}`, join(modelDir, 'current'));
    }
  } finally {
    db.close();
  }
}
