import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dirSize, planGc, type GcInput } from '../../agent/install/gc.js';

const d = (c: string) => c.repeat(64);
const v = (name: string, version: string, sizeBytes: number, installedAt: number, sha256?: string) => ({ namespace: 'default', name, version, sizeBytes, installedAt, sha256 });
const p = (name: string, version: string) => ({ namespace: 'default', name, version });

// Two models. resnet: 1 (old), 2 (previous), 3 (current). bert: a (old), b (current).
const base = (): GcInput => ({
  versions: [v('resnet', '1', 100, 1, d('1')), v('resnet', '2', 100, 2, d('2')), v('resnet', '3', 100, 3, d('3')), v('bert', 'a', 50, 4, d('a')), v('bert', 'b', 50, 5, d('b'))],
  blobs: [
    { sha256: d('1'), size: 40, lastUsedAt: 10 },
    { sha256: d('2'), size: 40, lastUsedAt: 20 },
    { sha256: d('3'), size: 40, lastUsedAt: 30 },
    { sha256: d('a'), size: 20, lastUsedAt: 5 },
    { sha256: d('b'), size: 20, lastUsedAt: 50 },
    { sha256: d('f'), size: 30, lastUsedAt: 1 }, // an orphan pre-seeded blob nobody wants
  ],
  protectedVersions: [p('resnet', '2'), p('resnet', '3'), p('bert', 'b')],
  wantedBlobs: [d('3'), d('b')],
  capBytes: 10_000,
});
// total = 400 versions + 190 blobs = 590

describe('planGc', () => {
  it('removes nothing under the cap', () => {
    const plan = planGc(base());
    expect(plan).toEqual({ removeVersions: [], removeBlobs: [], freedBytes: 0, totalAfter: 590, overCap: false });
  });

  it('removes unprotected versions first, oldest first, and stops at the cap', () => {
    const plan = planGc({ ...base(), capBytes: 490 });
    expect(plan.removeVersions).toEqual([{ ...p('resnet', '1'), sha256: d('1'), bytes: 100 }]);
    expect(plan.removeBlobs).toEqual([]);
    expect(plan.totalAfter).toBe(490);
    expect(plan.overCap).toBe(false);
  });

  it('then blobs nothing protected or wanted needs, least recently used first', () => {
    const plan = planGc({ ...base(), capBytes: 390 });
    expect(plan.removeVersions.map((x) => x.version)).toEqual(['1', 'a']);
    // left: 250 versions + 190 blobs = 440; orphan f (LRU 1) goes, then a (5) -> 390; 1 (10) stays
    expect(plan.removeBlobs.map((b) => b.sha256)).toEqual([d('f'), d('a')]);
    expect(plan.totalAfter).toBe(390);
    expect(plan.freedBytes).toBe(200);
  });

  it('then blobs of installed protected versions; never a protected version; reports overCap', () => {
    const plan = planGc({ ...base(), capBytes: 0 });
    expect(plan.removeVersions.map((x) => x.version).sort()).toEqual(['1', 'a']);
    expect(plan.removeBlobs.map((b) => b.sha256)).toEqual([d('f'), d('a'), d('1'), d('2'), d('3'), d('b')]);
    expect(plan.totalAfter).toBe(250); // the three protected versions
    expect(plan.overCap).toBe(true);
  });

  it('keeps a wanted blob whose version is not installed yet (needed to install it)', () => {
    const input = base();
    input.blobs.push({ sha256: d('4'), size: 500, lastUsedAt: 0 });
    input.wantedBlobs.push(d('4'));
    input.protectedVersions.push(p('resnet', '4')); // the target being installed, not unpacked yet
    const plan = planGc({ ...input, capBytes: 0 });
    expect(plan.removeBlobs.map((b) => b.sha256)).not.toContain(d('4'));
    expect(plan.overCap).toBe(true);
  });

  it('never lists a protected version, whatever the cap (exhaustive over caps)', () => {
    for (let cap = 0; cap <= 600; cap += 10) {
      const input = base();
      const plan = planGc({ ...input, capBytes: cap });
      const prot = new Set(input.protectedVersions.map((x) => `${x.name}/${x.version}`));
      for (const r of plan.removeVersions) expect(prot.has(`${r.name}/${r.version}`), `cap ${cap}`).toBe(false);
      expect(plan.overCap).toBe(plan.totalAfter > cap);
      if (plan.overCap) expect(plan.totalAfter).toBe(250);
      expect(plan.freedBytes).toBe(590 - plan.totalAfter);
    }
  });

  it('protects exactly the tree a ref names: another build of the same version is not protected by it', () => {
    const input = base();
    // resnet 3 republished: the serving build 3@e is protected, the first build 3@3 is not.
    input.versions.push(v('resnet', '3', 100, 6, d('e')));
    input.protectedVersions = [p('resnet', '2'), { ...p('resnet', '3'), sha256: d('e') }, p('bert', 'b')];
    const plan = planGc({ ...input, capBytes: 450 });
    expect(plan.removeVersions.map((x) => `${x.version}@${x.sha256![0]}`)).toEqual(['1@1', '3@3', 'a@a']);
    expect(plan.removeVersions.map((x) => x.sha256)).not.toContain(d('e'));
  });

  it('matches digests case-insensitively', () => {
    const input = base();
    input.versions[2].sha256 = d('3').toUpperCase();
    const plan = planGc({ ...input, capBytes: 300 });
    expect(plan.removeBlobs.map((b) => b.sha256)).not.toContain(undefined);
    expect(plan.totalAfter).toBeLessThanOrEqual(300);
  });
});

describe('dirSize', () => {
  it('sums regular files, counts hard links once, ignores symlinks', async () => {
    const root = await mkdtemp(join(tmpdir(), 'modeld-dirsize-'));
    try {
      await mkdir(join(root, 'a', 'b'), { recursive: true });
      await writeFile(join(root, 'a', 'x'), Buffer.alloc(1000));
      await writeFile(join(root, 'a', 'b', 'y'), Buffer.alloc(234));
      await link(join(root, 'a', 'x'), join(root, 'x-hard'));
      await symlink('a/x', join(root, 'x-soft'));
      expect(await dirSize(root)).toBe(1234);
      expect(await dirSize(join(root, 'missing'))).toBe(0);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
