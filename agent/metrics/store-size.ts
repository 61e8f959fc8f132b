import { dirSize } from '../install/gc.js';
import { toTree } from '../install/tree-ref.js';
import type { StatePaths } from '../paths.js';
import type { Store } from '../store/index.js';

// The store's size as gc counts it (archives + installed trees), for the scrape. A tree never
// changes once installed (read-only, named by its digest), so its size is measured once and
// remembered; archives' sizes are in their rows.

export class StoreSize {
  private readonly trees = new Map<string, number>();

  constructor(private readonly d: { paths: StatePaths; store: Pick<Store, 'blobs' | 'versions'> }) {}

  async bytes(): Promise<number> {
    let total = this.d.store.blobs.list().reduce((a, b) => a + b.size, 0);
    const live = new Set<string>();
    for (const v of this.d.store.versions.list()) {
      const dir = this.d.paths.treeDir(v.namespace, v.name, toTree(v.version, v.sha256)!);
      live.add(dir);
      let size = this.trees.get(dir);
      if (size === undefined) this.trees.set(dir, (size = await dirSize(dir)));
      total += size;
    }
    for (const dir of this.trees.keys()) if (!live.has(dir)) this.trees.delete(dir);
    return total;
  }
}
