// Pure path checks for archive entries: what an entry name or link target may be.
// Paths are handled as component lists relative to the unpack root, never joined with '..'.

export type Checked = { ok: true; parts: string[] } | { ok: false; reason: string };

/** Split an entry name into safe components: refuse absolute names, '..' and NUL; drop '.' and empty parts. */
export function entryParts(raw: string): Checked {
  if (raw.includes('\0')) return { ok: false, reason: 'name contains a NUL byte' };
  if (raw.startsWith('/')) return { ok: false, reason: 'absolute path' };
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return { ok: false, reason: "'..' path component" };
  return { ok: true, parts };
}

export type NodeKind = 'dir' | 'file' | 'symlink';

/** What the unpack has created so far, keyed by 'a/b/c'; symlinks keep their raw target. */
export interface TreeIndex {
  kinds: Map<string, NodeKind>;
  links: Map<string, string>;
}

export const newTreeIndex = (): TreeIndex => ({ kinds: new Map(), links: new Map() });

const MAX_HOPS = 40; // the kernel's own limit on symlink hops

/**
 * Resolve a symlink target as the kernel would, using only what the archive created, and say whether
 * it stays inside the root. '..' is applied after expanding links (so 'l/..' with l -> '.' escapes).
 * Names the archive has not created resolve as plain names: they do not exist, so they cannot lead out.
 */
export function linkTargetInside(index: TreeIndex, linkParts: string[], target: string): Checked {
  if (target.startsWith('/')) return { ok: false, reason: `symlink to absolute path '${target}'` };
  if (target.includes('\0')) return { ok: false, reason: 'symlink target contains a NUL byte' };
  let hops = 0;
  const walk = (base: string[], rel: string): string[] | string => {
    const stack = [...base];
    for (const comp of rel.split('/')) {
      if (comp === '' || comp === '.') continue;
      if (comp === '..') {
        if (stack.length === 0) return `symlink '${linkParts.join('/')}' -> '${target}' leaves the archive root`;
        stack.pop();
        continue;
      }
      stack.push(comp);
      const key = stack.join('/');
      if (index.kinds.get(key) === 'symlink') {
        if (++hops > MAX_HOPS) return `symlink '${linkParts.join('/')}' -> '${target}': too many levels of links`;
        const inner = index.links.get(key) ?? '';
        if (inner.startsWith('/')) return `symlink '${linkParts.join('/')}' -> '${target}' passes through a link to an absolute path`;
        stack.pop();
        const r = walk(stack, inner);
        if (typeof r === 'string') return r;
        stack.splice(0, stack.length, ...r);
      }
    }
    return stack;
  };
  const r = walk(linkParts.slice(0, -1), target);
  return typeof r === 'string' ? { ok: false, reason: r } : { ok: true, parts: r };
}
