import { z } from 'zod';

// Sizes in the config may be plain byte counts or strings like "512MiB", "2GB", "64k".

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = UNITS[m[2].toLowerCase()];
  return unit === undefined ? undefined : Math.floor(Number(m[1]) * unit);
}

export const Size = z.union([
  z.number().int().min(0),
  z.string().transform((s, ctx) => {
    const n = parseSize(s);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${s}" is not a size (e.g. 1048576, "512MiB", "2GB")` });
      return z.NEVER;
    }
    return n;
  }),
]);
