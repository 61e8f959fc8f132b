import { BlobTable } from './blobs.js';
import { openDatabase, type DB } from './db.js';
import { DownloadTable } from './downloads.js';
import { EventTable } from './events.js';
import { FreshnessTable } from './freshness.js';
import { ModelTable } from './models.js';
import { OutboxTable } from './outbox.js';
import { SpecTable } from './specs.js';
import { VersionTable } from './versions.js';

/** All tables of the state database, opened together. */
export interface Store {
  db: DB;
  specs: SpecTable;
  models: ModelTable;
  versions: VersionTable;
  blobs: BlobTable;
  downloads: DownloadTable;
  outbox: OutboxTable;
  events: EventTable;
  freshness: FreshnessTable;
  close(): void;
}

export function openStore(path: string): Store {
  const db = openDatabase(path);
  return {
    db,
    specs: new SpecTable(db),
    models: new ModelTable(db),
    versions: new VersionTable(db),
    blobs: new BlobTable(db),
    downloads: new DownloadTable(db),
    outbox: new OutboxTable(db),
    events: new EventTable(db),
    freshness: new FreshnessTable(db),
    close: () => db.close(),
  };
}
