import { readdirSync, readFileSync } from 'node:fs';

// Memory of processes as Linux accounts it: /proc/<pid>/smaps_rollup (private pages, PSS) and
// /proc/<pid>/status (RSS). Private (clean + dirty) is what the process alone costs the machine;
// PSS shares each shared page among the processes that map it.

export interface ProcMem {
  rss: number;
  private: number;
  pss: number;
}

const MiB = 1024 * 1024;
export const toMiB = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

/** The figures of one smaps_rollup text, in bytes (pure). */
export function parseSmapsRollup(text: string): { private: number; pss: number; rss: number } {
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { private: kb('Private_Clean') + kb('Private_Dirty'), pss: kb('Pss'), rss: kb('Rss') };
}

/** One process's memory; zeros when it is gone. */
export function procMem(pid: number): ProcMem {
  try {
    const m = parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return { rss: m.rss, private: m.private, pss: m.pss };
  } catch {
    return { rss: 0, private: 0, pss: 0 };
  }
}

/** The sum over `pids` (pure). */
export const sumMem = (ms: ProcMem[]): ProcMem => ms.reduce((a, m) => ({ rss: a.rss + m.rss, private: a.private + m.private, pss: a.pss + m.pss }), { rss: 0, private: 0, pss: 0 });

/** Every descendant pid of `pid` (from /proc/<p>/stat's ppid). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}
